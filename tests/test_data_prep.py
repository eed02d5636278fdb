"""data_prep on the fixtures: schema-valid parquet that verl's RLHFDataset loads, every skip counted."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from verl.utils.dataset.rl_dataset import RLHFDataset

from data_prep.prepare import main
from treerpo.tiny.model import build_tokenizer

FIX = Path(__file__).parent / "fixtures"
LOCAL = {"math": "math_train.jsonl", "math500": "math500.jsonl", "aime24": "aime24.parquet", "amc23": "amc23.json",
         "minerva": "minerva.jsonl", "olympiadbench": "olympiadbench.json", "gsm8k": "gsm8k.jsonl"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    args = ["--out", str(out)]
    for name, f in LOCAL.items():
        args += ["--local", f"{name}={FIX / f}"]
    assert main(args) == 0
    return out


def test_summary_accounts_for_every_row(prepared):
    summary = json.loads((prepared / "summary.json").read_text())
    for name, s in summary.items():
        assert s["read"] == s["written"] + sum(s["skipped"].values())
    assert summary["train"]["skipped"] == {"contaminated:math500": 1, "duplicate": 1, "level_filtered": 1,
                                           "missing_answer": 1, "missing_question": 1}
    assert summary["gsm8k"]["skipped"] == {"missing_answer": 1}
    assert summary["amc23"]["skipped"] == {"missing_answer": 1}


@pytest.mark.parametrize("name", ["train", "math500", "aime24", "amc23", "minerva", "olympiadbench", "gsm8k"])
def test_parquet_schema_and_rlhf_dataset(prepared, name):
    path = prepared / f"{name}.parquet"
    df = pd.read_parquet(path)
    assert len(df) > 0
    for col in ("data_source", "prompt", "ability", "reward_model", "extra_info"):
        assert col in df.columns
    row = df.iloc[0]
    assert row["reward_model"]["style"] == "rule" and row["reward_model"]["ground_truth"]
    assert list(row["prompt"][0].keys()) == ["role", "content"]
    assert "\\boxed{}" in row["prompt"][0]["content"]  # the instruction, as a system turn
    if name == "train":
        assert "agent_name" not in df.columns
    else:
        assert set(df["agent_name"]) == {"single_turn_agent"}
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer")
    ds = RLHFDataset(str(path), build_tokenizer(), cfg.data)
    item = ds[0]
    assert item["raw_prompt"][-1]["role"] == "user"
    assert len(ds) == len(df)


def test_ground_truths(prepared):
    gt = lambda n: list(pd.read_parquet(prepared / f"{n}.parquet")["reward_model"].map(lambda r: r["ground_truth"]))
    assert gt("gsm8k") == ["31", "12"]
    assert gt("train") == ["11", "8", "\\frac{7}{8}", "720"]
    assert gt("olympiadbench") == ["2,-2", "7"]
    assert gt("math500")[1] == "\\left( 3, \\frac{\\pi}{2} \\right)"


@pytest.mark.parametrize("content, message", [
    ('{"question": "ok", "answer": "1"}\n{"question": \n', "line 2 is not valid JSON"),
    ('{"not": "a list"}', "expected a list of JSON objects"),
])
def test_bad_file_exits_nonzero_naming_it(tmp_path, content, message):
    bad = tmp_path / ("bad.jsonl" if "\n" in content else "bad.json")
    bad.write_text(content)
    out = subprocess.run([sys.executable, "-m", "data_prep.prepare", "--out", str(tmp_path / "o"), "--train", "none",
                          "--eval", "gsm8k", "--local", f"gsm8k={bad}"], capture_output=True, text=True)
    assert out.returncode == 2
    assert str(bad) in out.stderr and message in out.stderr


def test_unknown_dataset_and_missing_file(tmp_path):
    assert main(["--out", str(tmp_path), "--eval", "nope", "--train", "none"]) == 2
    assert main(["--out", str(tmp_path), "--eval", "gsm8k", "--train", "none", "--local", "gsm8k=/no/file.jsonl"]) == 2


# ---- issue 9: null answers, empty sets, argument errors, length limits, counts that add up -------
NAN = float("nan")


def write_rows(path: Path, rows: list[dict]) -> Path:
    """rows as .jsonl (NaN written as JSON's NaN literal) or .parquet (NaN a float null)."""
    if path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prepare_one(tmp_path, capsys, name: str, path: Path, *extra: str) -> tuple[int, str]:
    """main() on one set; (exit status, stderr)."""
    code = main(["--out", str(tmp_path / "out"), "--train", "none", "--eval", name, "--local", f"{name}={path}",
                 *extra])
    return code, capsys.readouterr().err


def truths(parquet: Path) -> list[str]:
    return [r["ground_truth"] for r in pd.read_parquet(parquet)["reward_model"]]


@pytest.mark.parametrize("name, file, rows", [
    ("amc23", "a.parquet", [{"question": "One?", "answer": 17.0}, {"question": "Two?", "answer": NAN},
                            {"question": "Three?", "answer": 25.0}]),
    ("amc23", "a.jsonl", [{"question": "One?", "answer": 17}, {"question": "Two?", "answer": NAN},
                          {"question": "Three?", "answer": 25}]),
    ("amc23", "a.parquet", [{"question": "One?", "answer": "17"}, {"question": "Two?", "answer": None},
                            {"question": "Three?", "answer": "25"}]),
    ("gsm8k", "g.jsonl", [{"question": "One?", "answer": "#### 17"}, {"question": "Two?", "answer": NAN},
                          {"question": "Three?", "answer": "#### 25"}]),
])
def test_null_and_nan_answers_are_skipped_as_missing_answer(tmp_path, capsys, name, file, rows):
    code, err = prepare_one(tmp_path, capsys, name, write_rows(tmp_path / file, rows))
    assert code == 0, err
    assert [t.removesuffix(".0") for t in truths(tmp_path / "out" / f"{name}.parquet")] == ["17", "25"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary[name]["skipped"] == {"missing_answer": 1}


@pytest.mark.parametrize("rows, extra, expect", [
    ([], [], "has no rows"),
    ([{"problem": "One?", "answer": "1"}, {"problem": "Two?", "answer": "2"}], [],
     "2 of 2 skipped as missing_question; it has no column 'question' (its columns: answer, problem); "
     "name the right one with --map amc23:question=COLUMN"),
    ([{"question": "One?", "answer": "1"}], ["--map", "amc23:answer=final"],
     "1 of 1 skipped as missing_answer; it has no column 'final'"),
    ([{"question": "One?", "answer": None}, {"question": "Two?", "answer": " "}, {"question": "", "answer": "3"},
      {"question": "Four?", "answer": NAN}], [], "3 of 4 skipped as missing_answer"),
], ids=["empty-file", "wrong-columns", "wrong-map", "all-unusable"])
def test_a_set_with_no_row_left_is_an_error_naming_input_and_reason(tmp_path, capsys, rows, extra, expect):
    path = write_rows(tmp_path / "amc.jsonl", rows)
    code, err = prepare_one(tmp_path, capsys, "amc23", path, *extra)
    assert code == 2
    assert err.startswith("data_prep: error: amc23: ") and err.count("\n") == 1
    assert str(path) in err and expect in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the other sets


def test_a_training_set_with_no_row_left_is_an_error(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "out"), "--eval", "gsm8k", "--local", f"gsm8k={FIX / 'gsm8k.jsonl'}",
                 "--local", f"math={FIX / 'math_train.jsonl'}", "--levels", "9"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"math: no row written from {FIX / 'math_train.jsonl'}: 7 of 9 skipped as level_filtered" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expect", [
    (["--levels", "3,x"], "argument --levels: expected comma-separated integers such as 3,4,5, or 'all'; got '3,x'"),
    (["--levels", ""], "argument --levels: expected comma-separated integers"),
    (["--max-rows", "-1"], "argument --max-rows: expected a whole number >= 1, got '-1'"),
    (["--max-rows", "0"], "argument --max-rows: expected a whole number >= 1, got '0'"),
    (["--max-rows", "ten"], "argument --max-rows: expected a whole number >= 1, got 'ten'"),
    (["--max-question-chars", "0"], "argument --max-question-chars: expected a whole number >= 1"),
    (["--max-answer-chars", "-5"], "argument --max-answer-chars: expected a whole number >= 1"),
    (["--map", "amc23:qestion=problem"], "--map 'amc23:qestion=problem': unknown role 'qestion'"),
    (["--map", "amc23"], "--map 'amc23': expected NAME:role=column"),
    (["--local", "amc2=x.jsonl"], "--local: unknown dataset 'amc2'"),
    (["--eval", "", "--train", "none"], "nothing to prepare"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_argument_errors_are_one_line(tmp_path, capsys, args, expect):
    argv = ["--out", str(tmp_path / "out"), "--train", "none", "--eval", "amc23",
            "--local", f"amc23={FIX / 'amc23.json'}", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("data_prep: error: ") and err.count("\n") == 1, err
    assert expect in err
    assert not (tmp_path / "out").exists()


def test_argument_error_on_the_command_line_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "data_prep.prepare", "--out", str(tmp_path), "--levels", "3,x"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["data_prep: error: argument --levels: expected comma-separated integers "
                                       "such as 3,4,5, or 'all'; got '3,x'"]


def test_too_long_questions_and_answers_are_skipped(tmp_path, capsys):
    rows = [{"question": "Short?", "answer": "1"},
            {"question": "Medium? " + "word " * 40, "answer": "2"},     # 208 characters
            {"question": "Long answer?", "answer": "9" * 1001},         # over the verifier's 1000
            {"question": "Huge? " + "x " * 15_000, "answer": "4"}]      # 30006 characters
    path = write_rows(tmp_path / "a.jsonl", rows)
    code, err = prepare_one(tmp_path, capsys, "amc23", path)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["amc23"]
    assert summary["written"] == 2 and summary["skipped"] == {"too_long": 2}
    code, err = prepare_one(tmp_path, capsys, "amc23", path, "--max-question-chars", "100",
                            "--max-answer-chars", "2000")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["amc23"]
    assert summary["written"] == 2 and summary["skipped"] == {"too_long": 2}
    assert truths(tmp_path / "out" / "amc23.parquet") == ["1", "9" * 1001]


def test_summary_counts_add_up_for_every_skip_reason(tmp_path, capsys):
    shared = ("Find the number of ordered pairs of positive integers whose product is exactly one hundred "
              "and whose sum is even.")
    train = [
        {"problem": "What is 2+2?", "solution": "$\\boxed{4}$", "level": "Level 3"},
        {"problem": "", "solution": "$\\boxed{1}$", "level": "Level 3"},                    # missing_question
        {"problem": "Null solution?", "solution": None, "level": "Level 3"},                # missing_answer
        {"problem": "NaN solution?", "solution": NAN, "level": "Level 3"},                  # missing_answer
        {"problem": "Long? " + "a " * 200, "solution": "$\\boxed{5}$", "level": "Level 4"}, # too_long
        {"problem": "Easy?", "solution": "$\\boxed{6}$", "level": "Level 1"},               # level_filtered
        {"problem": "What is 2 + 2 ?", "solution": "$\\boxed{4}$", "level": "Level 3"},     # duplicate
        {"problem": shared, "solution": "$\\boxed{3}$", "level": "Level 5"},                # contaminated
        {"problem": "What is 3*3?", "solution": "$\\boxed{9}$", "level": "Level 5"},
        {"problem": "Past the limit?", "solution": "$\\boxed{7}$", "level": "Level 3"},     # max_rows
    ]
    evals = [{"problem": shared, "answer": "3", "solution": ""},
             {"problem": "No answer?", "answer": NAN, "solution": "no box"}]                  # missing_answer
    t, e = write_rows(tmp_path / "t.jsonl", train), write_rows(tmp_path / "e.parquet", evals)
    code = main(["--out", str(tmp_path / "out"), "--eval", "math500", "--local", f"math500={e}",
                 "--local", f"math={t}", "--max-rows", "9", "--max-question-chars", "300"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == {
        "math500": {"input": str(e), "read": 2, "written": 1, "skipped": {"missing_answer": 1}},
        "train": {"source": "math", "input": str(t), "read": 10, "written": 2, "skipped": {
            "contaminated:math500": 1, "duplicate": 1, "level_filtered": 1, "max_rows": 1, "missing_answer": 2,
            "missing_question": 1, "too_long": 1}},
    }
    for name, s in summary.items():
        assert s["read"] == s["written"] + sum(s["skipped"].values())
        assert len(pd.read_parquet(tmp_path / "out" / f"{name}.parquet")) == s["written"]
    assert truths(tmp_path / "out" / "train.parquet") == ["4", "9"]

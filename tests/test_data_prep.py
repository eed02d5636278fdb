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


# ---- null answers, empty sets, argument errors, length limits, counts that add up ---------------
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


# ---- answer types, conflicting duplicates, unused --local, text parquet cannot store --------------
def summary_of(tmp_path, name: str) -> dict:
    return json.loads((tmp_path / "out" / "summary.json").read_text())[name]


def test_answer_cells_are_converted_by_type_or_skipped_by_reason():
    from decimal import Decimal

    import numpy as np

    from data_prep.convert import answer_value

    cases = [
        ("17", "17"), (" 3 ", "3"), (17, "17"), (17.0, "17"), (np.int64(-4), "-4"), (np.float64(2.0), "2"),
        (1e20, "100000000000000000000"), (0.1, "0.1"), (np.float32(0.1), "0.1"), (1.5e-7, "0.00000015"),
        (Decimal("1E+3"), "1000"), (Decimal("0.50"), "0.50"), (["$2$"], "$2$"), ([1, "x"], "1, x"),
        (None, None), (NAN, None), ([], None), (" ", None),
    ]
    for value, text in cases:
        assert answer_value(value) == (text, None), value
    refused = [
        (True, "bad_answer_type:bool"), (np.bool_(False), "bad_answer_type:bool"),
        ({"value": "3"}, "bad_answer_type:dict"), ({}, "bad_answer_type:dict"),
        ([["1"]], "bad_answer_type:list"), ([{"a": 1}], "bad_answer_type:dict"), ([True], "bad_answer_type:bool"),
        (b"3", "bad_answer_type:bytes"), (1 + 2j, "bad_answer_type:complex"),
        (float("inf"), "non_finite_answer"), (-np.inf, "non_finite_answer"), (Decimal("Infinity"), "non_finite_answer"),
        ([1, float("inf")], "non_finite_answer"),
        (0.1 + 0.2, "float_answer"), (1 / 3, "float_answer"), (2.0**53 + 2, "float_answer"),
        (10**5000, "too_long"), (Decimal("1E+999999999"), "too_long"),  # never expanded into digits
    ]
    for value, reason in refused:
        assert answer_value(value) == (None, reason), value


@pytest.mark.parametrize("file, rows, written, skipped", [
    ("a.jsonl", [{"question": "A?", "answer": {"value": "3"}}, {"question": "B?", "answer": True},
                 {"question": "C?", "answer": 1e20}, {"question": "D?", "answer": 0.1 + 0.2},
                 {"question": "E?", "answer": float("inf")}, {"question": "F?", "answer": [["1"]]},
                 {"question": "G?", "answer": "7"}, {"question": "H?", "answer": 0.25}],
     ["100000000000000000000", "7", "0.25"],
     {"bad_answer_type:dict": 1, "bad_answer_type:bool": 1, "bad_answer_type:list": 1, "float_answer": 1,
      "non_finite_answer": 1}),
    ("a.parquet", [{"question": q, "answer": a} for q, a in
                   [("A?", 1e20), ("B?", 0.1 + 0.2), ("C?", float("inf")), ("D?", 17.0), ("E?", 0.5)]],
     ["100000000000000000000", "17", "0.5"], {"float_answer": 1, "non_finite_answer": 1}),
], ids=["jsonl-mixed", "parquet-float-column"])
def test_non_text_answers_are_converted_deliberately_or_skipped(tmp_path, capsys, file, rows, written, skipped):
    code = main(["--out", str(tmp_path / "out"), "--train", "none", "--eval", "amc23",
                 "--local", f"amc23={write_rows(tmp_path / file, rows)}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert truths(tmp_path / "out" / "amc23.parquet") == written
    assert summary_of(tmp_path, "amc23")["skipped"] == skipped
    for reason, count in skipped.items():
        assert f"{reason} {count}" in captured.out  # named in the printed summary


@pytest.mark.parametrize("answers, reason", [
    ([{"value": "3"}, {"value": "4"}], "bad_answer_type:dict"),  # a parquet struct column
    ([True, False], "bad_answer_type:bool"),
])
def test_a_struct_or_bool_answer_column_is_refused(tmp_path, capsys, answers, reason):
    rows = [{"question": f"Q{i}?", "answer": a} for i, a in enumerate(answers)]
    code, err = prepare_one(tmp_path, capsys, "amc23", write_rows(tmp_path / "a.parquet", rows))
    assert code == 2
    assert f"2 of 2 skipped as {reason}" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_question_repeated_with_another_answer_is_dropped_as_conflicting(tmp_path, capsys):
    rows = [{"question": "What is x?", "answer": "5"},
            {"question": "What is  x ?", "answer": "6"},         # same question, another answer
            {"question": "Two?", "answer": "7"},
            {"question": "two", "answer": "7.0"},                # the same answer: a plain duplicate
            {"question": "Half?", "answer": "\\frac{1}{2}"},
            {"question": "Half?", "answer": "0.5"},              # the same number: a plain duplicate
            {"question": "what is x", "answer": "5"}]            # agrees with the first, but x conflicts
    code, err = prepare_one(tmp_path, capsys, "amc23", write_rows(tmp_path / "a.jsonl", rows))
    assert code == 0, err
    assert truths(tmp_path / "out" / "amc23.parquet") == ["7", "\\frac{1}{2}"]
    s = summary_of(tmp_path, "amc23")
    assert s["skipped"] == {"conflicting_duplicate": 3, "duplicate": 2}
    assert s["read"] == s["written"] + sum(s["skipped"].values())
    df = pd.read_parquet(tmp_path / "out" / "amc23.parquet")
    assert [e["index"] for e in df["extra_info"]] == [0, 1]
    assert [e["source_index"] for e in df["extra_info"]] == [2, 4]


def test_a_conflicting_training_question_is_dropped_too(tmp_path, capsys):
    train = [{"problem": "What is 2+2?", "solution": "$\\boxed{4}$", "level": "Level 3"},
             {"problem": "What is 2+2?", "solution": "$\\boxed{5}$", "level": "Level 3"},
             {"problem": "What is 3*3?", "solution": "$\\boxed{9}$", "level": "Level 3"}]
    code = main(["--out", str(tmp_path / "out"), "--eval", "gsm8k", "--local", f"gsm8k={FIX / 'gsm8k.jsonl'}",
                 "--local", f"math={write_rows(tmp_path / 't.jsonl', train)}"])
    out = capsys.readouterr().out
    assert code == 0
    assert summary_of(tmp_path, "train")["skipped"] == {"conflicting_duplicate": 2}
    assert truths(tmp_path / "out" / "train.parquet") == ["9"]
    assert "conflicting_duplicate 2" in out


@pytest.mark.parametrize("args, name", [
    (["--eval", "amc23", "--train", "none", "--local", f"minerva={FIX / 'minerva.jsonl'}"], "minerva"),
    (["--eval", "amc23", "--train", "none", "--local", f"math={FIX / 'math_train.jsonl'}"], "math"),
    (["--eval", "amc23", "--train", "math", "--local", f"math500={FIX / 'math500.jsonl'}",
      "--local", f"math={FIX / 'math_train.jsonl'}"], "math500"),
    (["--eval", "amc23", "--train", "none", "--map", "minerva:question=problem"], "minerva"),
    (["--eval", "amc23", "--train", "none", "--hf-name", "gsm8k=someone/gsm8k"], "gsm8k"),
    (["--eval", "amc23", "--train", "none", "--split", "aime24=test"], "aime24"),
])
def test_an_option_for_a_set_not_prepared_is_an_error(tmp_path, capsys, args, name):
    code = main(["--out", str(tmp_path / "out"), "--local", f"amc23={FIX / 'amc23.json'}", *args])
    err = capsys.readouterr().err
    option = args[4]
    assert code == 2
    assert err.startswith(f"data_prep: error: {option} {name}") and err.count("\n") == 1, err
    assert f"{name!r} is not prepared in this run" in err
    assert not (tmp_path / "out").exists()


SURROGATE_ROWS = (  # JSON's \ud800 escape: a lone surrogate, which json.loads accepts and parquet cannot store
    '{"question": "Good?", "answer": "1", "id": "a"}\n'
    '{"question": "Bad \\ud800 question?", "answer": "2", "id": "b"}\n'
    '{"question": "Bad answer?", "answer": "3\\udfff", "id": "c"}\n'
    '{"question": "Bad id?", "answer": "4", "id": "\\ud800"}\n'
    '{"question": "Paired \\ud83d\\ude00 escape?", "answer": "5", "id": "e"}\n'  # a valid pair: an emoji
)


def test_lone_surrogates_are_skipped_as_bad_text(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_text(SURROGATE_ROWS)
    code, err = prepare_one(tmp_path, capsys, "amc23", path)
    assert code == 0, err
    assert summary_of(tmp_path, "amc23")["skipped"] == {"bad_text": 3}
    assert truths(tmp_path / "out" / "amc23.parquet") == ["1", "5"]


def test_a_set_of_only_bad_text_is_one_line_and_leaves_no_folder(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(line + "\n" for line in SURROGATE_ROWS.splitlines()[1:4]))
    out = subprocess.run([sys.executable, "-m", "data_prep.prepare", "--out", str(tmp_path / "out"), "--train", "none",
                          "--eval", "amc23", "--local", f"amc23={path}"], capture_output=True, text=True)
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and "3 of 3 skipped as bad_text" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_invalid_utf8_is_an_error_naming_the_line(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"question": "One?", "answer": "1"}\n{"question": "Tw\xff?", "answer": "2"}\n')
    code, err = prepare_one(tmp_path, capsys, "amc23", path)
    assert code == 2 and err.count("\n") == 1
    assert f"{path}: line 2 is not valid UTF-8 (byte 0xff" in err
    assert not (tmp_path / "out").exists()


def test_an_instruction_that_is_not_text_is_an_error(tmp_path, capsys):
    code, err = prepare_one(tmp_path, capsys, "amc23", FIX / "amc23.json", "--instruction", "Think \udcff.")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("data_prep: error: --instruction ") and "not valid text" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_write_that_fails_midway_leaves_nothing_behind(tmp_path, capsys, monkeypatch, existing):
    out = tmp_path / "deep" / "out"
    if existing:  # a folder from an earlier run: its files stay as they were
        out.mkdir(parents=True)
        (out / "amc23.parquet").write_text("earlier")
    real = pd.DataFrame.to_parquet

    def second_fails(self, path, *args, **kwargs):
        if "amc23" in str(path):
            raise ValueError("simulated failure")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", second_fails)
    code = main(["--out", str(out), "--train", "none", "--eval", "gsm8k,amc23",
                 "--local", f"gsm8k={FIX / 'gsm8k.jsonl'}", "--local", f"amc23={FIX / 'amc23.json'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--out {out}: cannot be written (ValueError: simulated failure)" in err
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["amc23.parquet"]
        assert (out / "amc23.parquet").read_text() == "earlier"
    else:
        assert not (tmp_path / "deep").exists()

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
from treerpo.tiny import build_tokenizer

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

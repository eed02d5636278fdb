"""Every launch script in examples/ is exercised on CPU: the GPU training scripts compose their
overrides into the full verl config and pass verl's validation plus ours (CHECK_ONLY=1); the data
and eval scripts run for real on the fixtures and a tiny model; reproduce.sh composes every run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TRAIN_SCRIPTS = sorted(p for p in EXAMPLES.glob("*/*.sh") if p.parent.name != "tiny")
FIX = ROOT / "tests" / "fixtures"


def run(script, env, *args, timeout=600):
    env = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def test_every_script_is_covered():
    covered = {p.name for p in TRAIN_SCRIPTS} | {"prepare_data.sh", "eval.sh", "reproduce.sh", "common.sh"}
    assert {p.name for p in EXAMPLES.rglob("*.sh")} <= covered
    assert len(TRAIN_SCRIPTS) == 5


@pytest.mark.parametrize("script", TRAIN_SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_training_script_config_validates(script):
    out = run(script, {"MODEL_PATH": "/models/x", "DATA_DIR": "/data", "CHECK_ONLY": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "config OK" in out.stdout


def test_check_rejects_a_key_that_never_reaches_the_code():
    script = EXAMPLES / "qwen2.5-math-1.5b" / "treepo.sh"
    env = {"MODEL_PATH": "/m", "DATA_DIR": "/d", "CHECK_ONLY": "1"}
    for bad in ("tree.rollout.leafs=16", "+actor_rollout_ref.rollout.tree_width=4", "algorithm.tau=0.1"):
        out = run(script, env, bad)
        assert out.returncode != 0, bad


def test_prepare_data_and_eval_scripts(tmp_path):
    data = tmp_path / "data"
    local = ["--local", f"math={FIX / 'math_train.jsonl'}", "--local", f"math500={FIX / 'math500.jsonl'}",
             "--local", f"aime24={FIX / 'aime24.parquet'}", "--local", f"amc23={FIX / 'amc23.json'}",
             "--local", f"minerva={FIX / 'minerva.jsonl'}", "--local", f"olympiadbench={FIX / 'olympiadbench.json'}",
             "--local", f"gsm8k={FIX / 'gsm8k.jsonl'}"]
    out = run(EXAMPLES / "prepare_data.sh", {"DATA_DIR": str(data)}, *local)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (data / "train.parquet").exists() and (data / "olympiadbench.parquet").exists()
    from treerpo.tiny.model import save_tiny

    a, b = save_tiny(tmp_path / "ckpt_a", seed=1), save_tiny(tmp_path / "ckpt_b", seed=2)
    out = run(EXAMPLES / "eval.sh", {"CKPTS": f"{a} {b}", "LABELS": "GRPO TreeRPO", "DATA_DIR": str(data), "K": "2",
                                     "MAX_TOKENS": "8", "ENGINE": "local", "OUT": str(tmp_path / "eval"),
                                     "BENCHES": "math500 aime24"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "eval" / "ckpt_b" / "results.md").exists()
    assert "| GRPO | 1 |" in out.stdout and "| TreeRPO |" in out.stdout and "method - GRPO" in out.stdout
    assert (tmp_path / "eval" / "table.md").exists()


def test_reproduce_script_composes_every_run(tmp_path):
    """reproduce.sh's runs are verl runs of minutes each; CHECK_ONLY composes and validates each one
    (the launch itself is tests/test_verl_e2e.py's, the report is tests/test_report.py's)."""
    out = run(EXAMPLES / "tiny" / "reproduce.sh", {"CHECK_ONLY": "1", "SEEDS": "1", "OUT": str(tmp_path)}, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 of 3 run configs compose" in out.stdout

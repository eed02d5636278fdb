"""Evaluation on a tiny model and the fixtures: table files, bootstrap interval, --compare."""

import json

import numpy as np
import pytest

from data_prep.prepare import main as prepare
from tests.test_data_prep import FIX
from treerpo.evaluate import bootstrap_ci, compare, main
from treerpo.tiny import save_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    assert prepare(["--out", str(root / "data"), "--train", "none", "--eval", "math500,gsm8k",
                    "--local", f"math500={FIX / 'math500.jsonl'}", "--local", f"gsm8k={FIX / 'gsm8k.jsonl'}"]) == 0
    return root, save_tiny(root / "model", seed=3)


def test_eval_writes_tables_and_compare(setup, capsys):
    root, model = setup
    data = [str(root / "data" / "math500.parquet"), str(root / "data" / "gsm8k.parquet")]
    for name, seed in (("a", 0), ("b", 1)):
        assert main(["--model", str(model), "--data", *data, "--k", "3", "--max-tokens", "12", "--seed", str(seed),
                     "--engine", "local", "--out", str(root / name)]) == 0
    res = json.loads((root / "a" / "results.json").read_text())
    assert set(res["benchmarks"]) == {"math500", "gsm8k"}
    assert res["settings"]["k"] == 3 and res["settings"]["seed"] == 0 and res["settings"]["engine"] == "local"
    for v in res["benchmarks"].values():
        assert 0 <= v["ci95"][0] <= v["pass@1"] <= v["ci95"][1] <= 1
        assert 0 < v["mean_tokens"] <= 12
    for f in ("results.csv", "results.md", "samples.jsonl"):
        assert (root / "a" / f).stat().st_size > 0
    lines = (root / "a" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 * (3 + 2)
    text = compare(str(root / "a"), str(root / "b"))
    assert "Average" in text and "B - A" in text


def test_bootstrap_interval():
    x = np.array([1.0] * 50 + [0.0] * 50)
    lo, hi = bootstrap_ci(x, 2000, 0)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert bootstrap_ci(np.ones(10), 100, 0) == (1.0, 1.0)

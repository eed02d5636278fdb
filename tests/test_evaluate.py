"""Evaluation on a tiny model and the fixtures: table files, bootstrap interval, --compare."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.prepare import main as prepare
from tests.test_data_prep import FIX
import treerpo.tools.evaluate as evaluate_module
from treerpo.tiny.model import save_tiny
from treerpo.tools.evaluate import bootstrap_ci, compare, main


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


# ---- every input checked before any sampling; no empty benchmark in the table -----------------
def no_sampling(*args, **kwargs):
    raise AssertionError("sampled before every input was checked")


def evaluate_cli(model, data, out, *extra) -> list[str]:
    return ["--model", str(model), "--data", *map(str, data), "--k", "1", "--max-tokens", "2", "--engine", "local",
            "--out", str(out), *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("evaluate: error: ") and err.count("\n") == 1, err
    return err


def bad_benchmark(kind: str, good: Path, tmp: Path) -> Path:
    """A --data file that must be refused, built from a good one."""
    df = pd.read_parquet(good)
    path = tmp / f"{kind}.parquet"
    if kind == "missing":
        return path
    if kind == "not-parquet":
        path.write_text("problem,answer\n1+1,2\n")
    elif kind == "columnless-empty":  # what data_prep wrote when nothing survived
        pd.DataFrame([]).to_parquet(path)
    elif kind == "zero-rows":
        df.iloc[:0].to_parquet(path)
    elif kind == "raw-source":
        return FIX / "aime24.parquet"
    elif kind == "no-ground-truth":
        df["reward_model"] = [{"style": "rule", "ground_truth": t} for t in ["31", None]]
        df.to_parquet(path)
    elif kind == "same-benchmark":
        return good
    return path


BAD = {"missing": "no such file", "not-parquet": "cannot be read as parquet",
       "columnless-empty": "no problems (0 rows)", "zero-rows": "no problems (0 rows)",
       "raw-source": "not a verl parquet (no column prompt, reward_model",
       "no-ground-truth": "row 1: no ground truth", "same-benchmark": "benchmark 'gsm8k' is also"}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_second_benchmark_stops_the_run_before_any_sampling(setup, tmp_path, capsys, monkeypatch, kind):
    root, model = setup
    monkeypatch.setattr(evaluate_module, "open_engine", no_sampling)
    good = root / "data" / "gsm8k.parquet"
    bad = bad_benchmark(kind, good, tmp_path)
    assert main(evaluate_cli(model, [good, bad], tmp_path / "out")) == 2
    err = one_line_error(capsys)
    assert f"--data {bad}: {BAD[kind]}" in err
    assert not (tmp_path / "out").exists()


def test_an_empty_benchmark_never_enters_the_table(setup, tmp_path, capsys):
    root, model = setup
    good = root / "data" / "gsm8k.parquet"
    empty = bad_benchmark("zero-rows", good, tmp_path)
    code = main(evaluate_cli(model, [good, empty], tmp_path / "out"))
    assert code == 2 and "no problems (0 rows)" in one_line_error(capsys)
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("model, expect", [
    ("/no/such/checkpoint", "no such directory"),
    ("./no_such_checkpoint", "no such directory"),
    ("~/no_such_checkpoint", "no such directory"),
    ("FILE", "not a directory"),
    ("EMPTY_DIR", "no config.json in it"),
])
def test_a_bad_local_model_path_is_named(setup, tmp_path, capsys, monkeypatch, model, expect):
    root, _ = setup
    monkeypatch.setattr(evaluate_module, "open_engine", no_sampling)
    if model == "FILE":
        model = tmp_path / "weights.bin"
        model.write_text("")
    elif model == "EMPTY_DIR":
        model = tmp_path / "global_step_10"
        model.mkdir()
    assert main(evaluate_cli(model, [root / "data" / "gsm8k.parquet"], tmp_path / "out")) == 2
    assert f"evaluate: error: --model {model}: {expect}" in one_line_error(capsys)


def test_a_hub_id_goes_to_transformers_and_its_failure_is_one_line(setup, tmp_path, capsys, monkeypatch):
    import transformers

    root, _ = setup
    asked = []

    def offline(name, *args, **kwargs):
        asked.append(name)
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {name}.\nDetails.")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(offline))
    monkeypatch.setattr(evaluate_module, "open_engine", no_sampling)
    assert main(evaluate_cli("nobody/no-such-model", [root / "data" / "gsm8k.parquet"], tmp_path / "out")) == 2
    assert asked == ["nobody/no-such-model"]
    err = one_line_error(capsys)
    assert "--model nobody/no-such-model: cannot be loaded (not a local directory, so it was looked up on the " \
           "Hugging Face hub): OSError: We couldn't connect" in err


@pytest.mark.parametrize("args, expect", [
    (["--k", "0"], "argument --k: expected a number >= 1, got '0'"),
    (["--max-tokens", "-3"], "argument --max-tokens: expected a number >= 1"),
    (["--top-p", "1.5"], "argument --top-p: expected a number in (0.0, 1.0], got '1.5'"),
    (["--temperature", "nan"], "argument --temperature: expected a number >= 0.0"),
])
def test_bad_settings_are_one_line_errors(setup, tmp_path, capsys, args, expect):
    root, model = setup
    assert main(evaluate_cli(model, [root / "data" / "gsm8k.parquet"], tmp_path / "out", *args)) == 2
    assert expect in one_line_error(capsys)


def test_compare_names_a_directory_without_results(tmp_path, capsys):
    assert main(["--compare", str(tmp_path), str(tmp_path)]) == 2
    assert f"--compare {tmp_path}: no results.json in it" in one_line_error(capsys)


# ---- the engine: vLLM (treerpo.engines.vllm) when it imports, else local -------------------------
def broken_vllm(monkeypatch, error: Exception | None):
    """`import vllm` fails: not installed (error None) or raising `error` (a broken install)."""
    import builtins
    import sys

    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    if error is None:
        monkeypatch.setitem(sys.modules, "vllm", None)  # ModuleNotFoundError, name "vllm"
        return
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


@pytest.mark.parametrize("error, expect", [
    (None, "--engine vllm: vLLM is not installed; use --engine local"),
    (OSError("libnvrtc.so.13: cannot open shared object file\nmore"),
     "--engine vllm: vLLM does not import (OSError: libnvrtc.so.13: cannot open shared object file); use --engine local"),
])
def test_engine_vllm_without_vllm_is_one_line(setup, tmp_path, capsys, monkeypatch, error, expect):
    root, model = setup
    broken_vllm(monkeypatch, error)
    monkeypatch.setattr(evaluate_module, "open_engine", no_sampling)
    assert main(evaluate_cli(model, [root / "data" / "gsm8k.parquet"], tmp_path / "out", "--engine", "vllm")) == 2
    assert f"evaluate: error: {expect}" in one_line_error(capsys)


@pytest.mark.parametrize("error", [None, OSError("libnvrtc.so.13")])
def test_engine_auto_falls_back_to_local_without_vllm(monkeypatch, error):
    from treerpo.tools.eval_inputs import pick_engine

    broken_vllm(monkeypatch, error)
    assert pick_engine("auto") == "local" and pick_engine("local") == "local"

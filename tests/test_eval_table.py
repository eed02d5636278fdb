"""The papers' table over evaluated checkpoints (treerpo/tools/eval_table.py): its numbers on
hand-made results, and the command on folders `evaluate` wrote for a tiny model and the fixtures."""

import json
import math

import numpy as np
import pytest

from treerpo.stats import t_quantile, t_two_sided_p
from treerpo.tools import eval_table


def write(folder, benchmarks, k=4, tokens=100.0):
    folder.mkdir(parents=True)
    res = {"settings": {"model": str(folder), "k": k}, "benchmarks": {}}
    for name, per in benchmarks.items():
        per = list(map(float, per))
        res["benchmarks"][name] = {"problems": len(per), "pass@1": float(np.mean(per)), "ci95": [0, 1],
                                   "mean_tokens": tokens, "per_problem": per}
    (folder / "results.json").write_text(json.dumps(res))
    return str(folder)


def test_paired_by_problem_by_hand(tmp_path):
    a = {"b1": [0, 0.5, 1, 0.25], "b2": [0, 0, 1, 1, 0.5, 0.5]}
    b = {"b1": [0.25, 0.5, 1, 0.75], "b2": [0, 0.25, 1, 1, 0.75, 0.5]}
    runs = eval_table.parse_runs([f"GRPO={write(tmp_path / 'a', a)}", f"TreeRPO={write(tmp_path / 'b', b, tokens=80.0)}"])
    text, data = eval_table.table(runs)
    d1, d2 = np.array([0.25, 0, 0, 0.5]), np.array([0, 0.25, 0, 0, 0.25, 0])
    avg = (d1.mean() + d2.mean()) / 2
    v1, v2 = d1.var(ddof=1) / 4, d2.var(ddof=1) / 6
    se = math.sqrt(v1 + v2) / 2
    df = (v1 + v2) ** 2 / (v1 ** 2 / 3 + v2 ** 2 / 5)  # Welch-Satterthwaite
    got = data["minus_baseline"]["TreeRPO"]["Avg"]
    assert got["mean"] == pytest.approx(avg)
    assert got["hi"] - got["mean"] == pytest.approx(t_quantile(0.975, df) * se)
    assert got["t_p"] == pytest.approx(t_two_sided_p(avg / se, df))
    assert data["rows"]["GRPO"]["Avg"]["mean"] == pytest.approx((np.mean(a["b1"]) + np.mean(a["b2"])) / 2)
    assert data["minus_baseline"]["TreeRPO"]["tokens_relative"] == pytest.approx(-0.2)
    assert "| TreeRPO | 1 |" in text and "paired by" in text and "problems" in text


def test_different_problems_are_not_paired(tmp_path):
    a = write(tmp_path / "a", {"m": [0, 1, 1]})
    write(tmp_path / "b", {"m": [1, 1, 0]})
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    res["benchmarks"]["m"]["problems_digest"] = "other"  # evaluated on another parquet of 3 problems
    (tmp_path / "b" / "results.json").write_text(json.dumps(res))
    with pytest.raises(eval_table.TableError, match="must hold the same problems"):
        eval_table.table(eval_table.parse_runs([f"GRPO={a}", f"B={tmp_path / 'b'}"]))


def test_seeds_give_t_intervals_and_sign_flips(tmp_path):
    runs = {}
    args = []
    for label, shift in (("GRPO", 0.0), ("TreePO", 0.1)):
        folders = [write(tmp_path / f"{label}{s}", {"m": [0.2 + shift + 0.01 * s] * 5}) for s in range(5)]
        args.append(f"{label}={','.join(folders)}")
    runs = eval_table.parse_runs(args)
    _, data = eval_table.table(runs)
    row = data["rows"]["GRPO"]["m"]
    assert row["n"] == 5 and row["mean"] == pytest.approx(0.22)
    d = data["minus_baseline"]["TreePO"]["Avg"]
    assert d["pairs"] == "seeds" and d["mean"] == pytest.approx(0.1) and d["sign_flip_p"] == pytest.approx(2 / 32)


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert eval_table.main(["GRPO"]) == 2
    assert "expected LABEL=DIR" in capsys.readouterr().err
    assert eval_table.main([f"GRPO={tmp_path}"]) == 2
    assert "no results.json" in capsys.readouterr().err
    a = write(tmp_path / "a", {"m": [0, 1]})
    assert eval_table.main([f"A={a}", f"B={a}", "--baseline", "C"]) == 2
    assert "--baseline 'C'" in capsys.readouterr().err


def test_on_folders_evaluate_wrote(tmp_path, capsys):
    """Two tiny checkpoints evaluated on the fixtures (the same command GPU users run)."""
    from data_prep.prepare import main as prepare
    from tests.test_data_prep import FIX
    from treerpo.tiny.model import save_tiny
    from treerpo.tools.evaluate import main as evaluate

    assert prepare(["--out", str(tmp_path / "data"), "--train", "none", "--eval", "math500,gsm8k",
                    "--local", f"math500={FIX / 'math500.jsonl'}", "--local", f"gsm8k={FIX / 'gsm8k.jsonl'}"]) == 0
    data = [str(tmp_path / "data" / "math500.parquet"), str(tmp_path / "data" / "gsm8k.parquet")]
    for name, seed in (("grpo", 1), ("treerpo", 2)):
        model = save_tiny(tmp_path / f"m{seed}", seed=seed)
        assert evaluate(["--model", str(model), "--data", *data, "--k", "2", "--max-tokens", "8",
                         "--engine", "local", "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    assert eval_table.main([f"GRPO={tmp_path / 'grpo'}", f"TreeRPO={tmp_path / 'treerpo'}",
                            "--out", str(tmp_path / "table.md")]) == 0
    out = capsys.readouterr().out
    assert "| method | checkpoints | math500 | gsm8k | Avg | mean tokens |" in out
    assert "| TreeRPO |" in out and "method - GRPO" in out
    assert (tmp_path / "table.md").read_text().strip() == out.strip()

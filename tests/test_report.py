"""The miniature reproduction's report: its statistics, and its tables on small synthetic runs."""

import json
import math
from pathlib import Path

import pytest

from treerpo.tiny import report, runs as runs_mod
from treerpo.stats import (betainc, first_reach, interpolate, mean_ci, paired, sign_flip_p, t_quantile,
                                t_two_sided_p)

# Student's t quantiles t_{0.975, df} (standard tables)
T975 = {1: 12.7062, 2: 4.3027, 4: 2.7764, 9: 2.2622, 30: 2.0423}


@pytest.mark.parametrize("df, t", sorted(T975.items()))
def test_t_quantiles_match_the_tables(df, t):
    assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)
    assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=1e-5)


def test_incomplete_beta_closed_forms():
    assert betainc(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert betainc(2, 1, 0.5) == pytest.approx(0.25)  # x^2
    assert betainc(0.5, 0.5, 0.5) == pytest.approx(0.5)  # arcsine law, symmetric
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)


def test_mean_ci_by_hand():
    ci = mean_ci([0.30, 0.34, 0.28, 0.36, 0.32])
    sd = math.sqrt(sum((x - 0.32) ** 2 for x in [0.30, 0.34, 0.28, 0.36, 0.32]) / 4)
    half = 2.776445 * sd / math.sqrt(5)
    assert (ci["mean"], ci["lo"], ci["hi"], ci["n"]) == pytest.approx((0.32, 0.32 - half, 0.32 + half, 5), abs=1e-6)
    assert mean_ci([0.5])["lo"] == 0.5 and mean_ci([])["n"] == 0


def test_paired_test_by_hand():
    a = [0.40, 0.38, 0.45, 0.41, 0.36]
    b = [0.35, 0.37, 0.40, 0.36, 0.36]
    d = [x - y for x, y in zip(a, b)]  # 0.05, 0.01, 0.05, 0.05, 0.00
    out = paired(a, b)
    m = sum(d) / 5
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 4)
    t = m / (sd / math.sqrt(5))
    assert out["mean"] == pytest.approx(m) and out["n"] == 5
    assert out["t_p"] == pytest.approx(t_two_sided_p(t, 4))
    assert out["t_p"] == pytest.approx(0.0453, abs=5e-4)  # t = 0.032 / (0.0249 / sqrt 5) = 2.873, df 4
    # sign flips: |sum| >= 0.16 only for the all-plus and all-minus patterns, and with the 0.00
    # difference either sign: 4 of 32
    assert out["sign_flip_p"] == pytest.approx(4 / 32)
    assert sign_flip_p([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert paired([1, None, 3], [0, 5, 1])["n"] == 2  # a missing side drops the pair


def test_interpolation_never_extrapolates():
    xs, ys = [0, 100, 200], [0.2, 0.4, 0.3]
    assert interpolate(xs, ys, 50) == pytest.approx(0.3)
    assert interpolate(xs, ys, 200) == pytest.approx(0.3)
    assert interpolate(xs, ys, 201) is None and interpolate(xs, ys, -1) is None
    assert first_reach(xs, ys, 0.3) == pytest.approx(50)
    assert first_reach(xs, ys, 0.5) is None


def fake_run(est, seed, accs, tokens_per_step, steps, finished=True):
    """A run record as runs.load_run makes it: validation every 4 steps, 2 sets."""
    vals = []
    for step in range(0, steps + 1, 4):
        a = accs(step)
        vals.append({"step": step, "acc": {"chain3": a + 0.1, "chain6": a - 0.1}, "mean": a,
                     "tokens": step * tokens_per_step, "seconds": step * 2.0, "response_tokens": 40.0})
    return {"estimator": est, "seed": seed, "finished": finished, "steps": steps, "prompts_per_step": 2, "leaves": 4,
            "validations": vals, "diagnostics": {"entropy": 0.5, "prompt_zero_variance": 0.4}}


def synthetic():
    runs = []
    for seed in range(5):
        base = 0.30 + 0.01 * seed
        runs.append(fake_run("grpo", seed, lambda s, b=base: b + 0.005 * s, 100, 16))
        # TreeRPO: +2 points at step 16 on every seed but seed 4 (+1); 0.66 of the tokens a step
        bonus = 0.01 if seed == 4 else 0.02
        runs.append(fake_run("treerpo", seed, lambda s, b=base, e=bonus: b + 0.005 * s + e * s / 16, 66, 24))
    return runs


def test_report_tables_on_synthetic_runs():
    runs = synthetic()
    text, data = report.build(runs)
    assert data["step"] == 16
    # base row: step 0, the average of the two sets
    base = data["equal_steps"]["base"]["avg"]
    assert base["mean"] == pytest.approx(0.32) and base["n"] == 5
    grpo = data["equal_steps"]["grpo"]["avg"]
    assert grpo["mean"] == pytest.approx(0.32 + 0.08)
    d = data["versus_grpo"]["treerpo"]["avg"]
    assert d["diffs"] == pytest.approx([0.02, 0.02, 0.02, 0.02, 0.01])
    assert d["mean"] == pytest.approx(0.018) and d["sign_flip_p"] == pytest.approx(2 / 32)
    assert d["lo"] > 0 and "higher" in data["verdicts"][0]
    # equal tokens: GRPO reaches 1600 tokens at step 16, TreeRPO 1584 at step 24: the common end
    # is 1584; TreeRPO at 1584 tokens is at step 24, GRPO at step 15.84
    pts = data["equal_tokens"]["points"]
    assert pts[-1] == pytest.approx(1584)
    g = data["equal_tokens"]["grpo"]["values"][0][-1]
    assert g == pytest.approx(0.30 + 0.005 * 15.84)
    t = data["equal_tokens"]["treerpo"]["values"][0][-1]
    assert t == pytest.approx(0.30 + 0.005 * 24 + 0.02 * 24 / 16)
    # tokens to reach GRPO's step-16 accuracy (0.38 on seed 0): TreeRPO's curve b + 0.00625 s
    # reaches it at s = 12.8 -> 12.8 * 66 / 1600 tokens
    assert data["tokens_to_reach"]["treerpo"]["per_seed"][0] == pytest.approx(12.8 * 66 / 1600)
    assert "| GRPO | 5 |" in text and "chain6 (OOD)" in text


def test_runs_are_read_back_from_verl_files(tmp_path):
    run = tmp_path / "grpo-seed3"
    (run / "rollouts").mkdir(parents=True)
    (run / "command.txt").write_text("python -m verl_ext.main data.train_batch_size=2 actor_rollout_ref.rollout.n=4\n")
    lines = [{"step": 0, "data": {"val-core/chain3/acc/mean@1": 0.25, "val-core/chain6/acc/mean@1": 0.05}}]
    for step in (1, 2):
        lines.append({"step": step, "data": {"critic/score/mean": 0.5, "response_length/mean": 10.0,
                                             "timing_s/step": 3.0, "actor/entropy": 0.7}})
    lines.append({"step": 2, "data": {"val-core/chain3/acc/mean@1": 0.5, "val-core/chain6/acc/mean@1": 0.1}})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rollouts = [{"input": "a", "score": 1.0}, {"input": "a", "score": 0.0}, {"input": "b", "score": 0.0},
                {"input": "b", "score": 0.0}]
    (run / "rollouts" / "1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rollouts))
    rec = runs_mod.load_run(run)
    assert (rec["estimator"], rec["seed"], rec["steps"], rec["finished"]) == ("grpo", 3, 2, False)
    v = rec["validations"]
    assert [x["step"] for x in v] == [0, 2]
    assert v[1]["tokens"] == pytest.approx(2 * 10.0 * 2 * 4) and v[1]["seconds"] == pytest.approx(6.0)
    assert v[1]["mean"] == pytest.approx(0.3) and v[0]["tokens"] == 0
    assert rec["diagnostics"]["prompt_zero_variance"] == pytest.approx(0.5)
    assert rec["diagnostics"]["entropy"] == pytest.approx(0.7)


def test_report_command_writes_its_files(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 1  # no runs: one line, no traceback
    assert "no runs" in capsys.readouterr().err
    for r in synthetic():
        d = tmp_path / f"{r['estimator']}-seed{r['seed']}"
        d.mkdir()
        (d / "summary.json").write_text("{}")
        (d / "command.txt").write_text("x data.train_batch_size=2 actor_rollout_ref.rollout.n=4 "
                                       "tree.rollout.branching=2 tree.rollout.depth=2\n")
        lines = []
        prev_tokens = 0
        for v in r["validations"]:
            for step in range(max(1, v["step"] - 3), v["step"] + 1) if v["step"] else []:
                per = (v["tokens"] - prev_tokens) / 4
                data = {"critic/score/mean": 0.5, "timing_s/step": 2.0}
                data.update({"tree/generated_tokens": per} if r["estimator"] != "grpo" else
                            {"response_length/mean": per / 8})
                lines.append({"step": step, "data": data})
            prev_tokens = v["tokens"]
            lines.append({"step": v["step"], "data": {f"val-core/{k}/acc/mean@1": a for k, a in v["acc"].items()}})
        (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert report.main([str(tmp_path)]) == 0
    for name in ("results.md", "results.json", "runs.json", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    back = json.loads((tmp_path / "runs.json").read_text())
    assert len(back) == 10 and back[0]["validations"][-1]["tokens"] == pytest.approx(1600)


def test_grid_ablation_rows(tmp_path):
    import argparse

    from treerpo.tiny import grid

    row = grid.ablation("treerpo_group=treerpo:tree.advantage.norm=group,tree.advantage.tau=0")
    assert row == ("treerpo_group", "treerpo", ["tree.advantage.norm=group", "tree.advantage.tau=0"])
    runs = grid.grid_runs(tmp_path, [3], ["grpo"], ablations=[row])
    assert [Path(r.out).name for r in runs] == ["grpo-seed3", "treerpo_group-seed3"]
    assert runs[1].estimator == "treerpo" and runs[1].extra[-1] == "tree.advantage.tau=0"
    assert runs[1].steps == grid.STEPS["treerpo"]
    for bad in ("treerpo", "Tree=treerpo:x=1", "a=sft:x=1", "a=treerpo:"):
        with pytest.raises(argparse.ArgumentTypeError):
            grid.ablation(bad)

"""The miniature reproduction's report: the papers' table from a grid of runs, with CIs over seeds.

    python -m treerpo.tiny.report runs/chains        # writes results.md, runs.json, curves.png there

Tables (accuracy in %, each cell the mean over seeds and its 95% t-interval, treerpo/stats.py):
  1. equal steps (the papers' protocol): rows base (the step-0 validation) / GRPO / TreeRPO /
     TreePO, columns the validation sets, their average and the validation response length;
     read at the largest step every finished run validated at
  2. each tree method minus GRPO at that step, paired by seed (same warm-up, same prompts in the
     same order, same validation seeds): the mean difference, its CI, the paired t-test's p and
     the exact sign-flip p
  3. equal compute: every run's average accuracy read at the same cumulative generated tokens,
     and at the same training seconds (interpolated between validations, never extrapolated),
     with the paired difference to GRPO
  4. tokens each tree method needed to reach GRPO's final accuracy, per seed
  5. why: each method's diagnostics (treerpo/tiny/runs.py), means over seeds of per-run medians
Then one verdict sentence per claim, and `curves.png`: average accuracy against step, generated
tokens and training seconds, the mean over seeds with its 95% band. `runs.json` holds every run's
validations (each set's accuracy, cumulative tokens, seconds), so the tables can be recomputed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

from treerpo.tiny.runs import load_runs
from treerpo.stats import first_reach, interpolate, mean_ci, paired
from treerpo.tiny.task import OOD_SETS

ORDER = ["grpo", "treerpo", "treepo"]
NAME = {"base": "base (step 0)", "grpo": "GRPO", "treerpo": "TreeRPO", "treepo": "TreePO"}
FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # equal-compute read points, as fractions of the common range


def methods(runs: list[dict]) -> list[str]:
    present = {r["estimator"] for r in runs}
    return [m for m in ORDER if m in present] + sorted(present - set(ORDER))


def by_seed(runs: list[dict], estimator: str) -> dict[int, dict]:
    return {r["seed"]: r for r in runs if r["estimator"] == estimator}


def at_step(run: dict, step: int) -> Optional[dict]:
    return next((v for v in run["validations"] if v["step"] == step), None)


def compare_step(runs: list[dict]) -> Optional[int]:
    """The largest step at which every finished run validated (the equal-steps read point)."""
    done = [r for r in runs if r["finished"]] or runs
    common = set.intersection(*({v["step"] for v in r["validations"]} for r in done)) if done else set()
    common.discard(0)
    return max(common) if common else None


def set_names(runs: list[dict]) -> list[str]:
    names = sorted({k for r in runs for v in r["validations"] for k in v["acc"]})
    return [n for n in names if n not in OOD_SETS] + [n for n in names if n in OOD_SETS]


def fmt(ci: dict, scale: float = 100.0, signed: bool = False, digits: int = 1) -> str:
    if ci["n"] == 0 or math.isnan(ci["mean"]):
        return "n/a"
    sign = "+" if signed else ""
    m, lo, hi = (scale * ci[k] for k in ("mean", "lo", "hi"))
    return f"{m:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def _value(v: Optional[dict], column: str) -> Optional[float]:
    if v is None:
        return None
    if column == "avg":
        return v["mean"]
    if column == "response_tokens":
        return v.get("response_tokens")
    return v["acc"].get(column)


def equal_steps(runs: list[dict], step: int) -> tuple[str, dict]:
    sets = set_names(runs)
    columns = sets + ["avg", "response_tokens"]
    header = ["method", "seeds"] + [f"{s} (OOD)" if s in OOD_SETS else s for s in sets] + ["avg", "response tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    data: dict = {}
    base: dict[int, list] = {}
    for r in runs:
        v0 = at_step(r, 0)
        if v0 is not None:
            base.setdefault(r["seed"], []).append(v0)
    rows = [("base", {s: vs for s, vs in base.items()})] + [(m, by_seed(runs, m)) for m in methods(runs)]
    for name, seeds in rows:
        cells, data[name] = [], {}
        for col in columns:
            if name == "base":
                xs = [_mean([_value(v, col) for v in vs]) for vs in seeds.values()]
            else:
                xs = [_value(at_step(r, step), col) for r in seeds.values()]
            ci = mean_ci([x for x in xs if x is not None])
            data[name][col] = ci
            cells.append(fmt(ci, 1.0, digits=1) if col == "response_tokens" else fmt(ci))
        lines.append(f"| {NAME.get(name, name)} | {data[name]['avg']['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def _mean(xs: list) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def versus_grpo(runs: list[dict], step: int) -> tuple[str, dict]:
    sets = set_names(runs)
    columns = sets + ["avg", "response_tokens"]
    header = ["method - GRPO", "paired seeds"] + sets + ["avg", "p (t)", "p (sign-flip)", "response tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    grpo = by_seed(runs, "grpo")
    data: dict = {}
    for m in methods(runs):
        if m == "grpo":
            continue
        mine = by_seed(runs, m)
        seeds = sorted(set(mine) & set(grpo))
        data[m] = {}
        for col in columns:
            a = [_value(at_step(mine[s], step), col) for s in seeds]
            b = [_value(at_step(grpo[s], step), col) for s in seeds]
            data[m][col] = paired(a, b)
        d = data[m]
        cells = [fmt(d[s], signed=True) for s in sets] + [fmt(d["avg"], signed=True), _p(d["avg"]["t_p"]),
                                                          _p(d["avg"]["sign_flip_p"]),
                                                          fmt(d["response_tokens"], 1.0, signed=True)]
        lines.append(f"| {NAME.get(m, m)} | {d['avg']['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.3f}"


def curve(run: dict, axis: str) -> tuple[list, list]:
    pts = [(v[axis], v["mean"]) for v in run["validations"]]
    return [x for x, _ in pts], [y for _, y in pts]


def equal_compute(runs: list[dict], axis: str) -> tuple[str, dict]:
    """Average accuracy at the same `axis` value (tokens or seconds) for every finished run: read
    at FRACTIONS of the largest value every finished run reached (an unfinished one would cut the
    range for all)."""
    runs = [r for r in runs if r["finished"] and len(r["validations"]) >= 2] or \
        [r for r in runs if len(r["validations"]) >= 2]
    ends = [r["validations"][-1][axis] for r in runs]
    if not ends or min(ends) <= 0:
        return "(no runs)", {}
    reach = min(ends)
    points = [f * reach for f in FRACTIONS]
    unit = "k tokens" if axis == "tokens" else "s"
    scale = 1e-3 if axis == "tokens" else 1.0
    header = ["method"] + [f"{p * scale:.0f} {unit}" for p in points]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    data: dict = {"points": points}
    grpo = by_seed(runs, "grpo")
    for m in methods(runs):
        mine = by_seed(runs, m)
        values = {s: [interpolate(*curve(r, axis), p) for p in points] for s, r in mine.items()}
        data[m] = {"values": values, "ci": [mean_ci([values[s][i] for s in values]) for i in range(len(points))]}
        lines.append(f"| {NAME.get(m, m)} | " + " | ".join(fmt(ci) for ci in data[m]["ci"]) + " |")
    for m in methods(runs):
        if m == "grpo" or "grpo" not in data:
            continue
        seeds = sorted(set(data[m]["values"]) & set(grpo))
        diffs = [paired([data[m]["values"][s][i] for s in seeds], [data["grpo"]["values"][s][i] for s in seeds])
                 for i in range(len(points))]
        data[m]["minus_grpo"] = diffs
        lines.append(f"| {NAME.get(m, m)} - GRPO | " + " | ".join(
            f"{fmt(d, signed=True)} (p {_p(d['t_p'])})" for d in diffs) + " |")
    return "\n".join(lines), data


def tokens_to_reach(runs: list[dict], step: int) -> tuple[str, dict]:
    """Per seed: tokens a tree method needed to reach GRPO's accuracy at `step`, over GRPO's tokens."""
    grpo = by_seed(runs, "grpo")
    lines = ["| method | seeds reaching GRPO's step-%d accuracy | tokens / GRPO's tokens, per seed | mean [95%% CI] |"
             % step, "|---|---|---|---|"]
    data: dict = {}
    for m in methods(runs):
        if m == "grpo":
            continue
        ratios = {}
        for s, r in by_seed(runs, m).items():
            g = at_step(grpo[s], step) if s in grpo else None
            if g is None:
                continue
            x = first_reach(*curve(r, "tokens"), g["mean"])
            ratios[s] = None if x is None or g["tokens"] <= 0 else x / g["tokens"]
        reached = [x for x in ratios.values() if x is not None]
        data[m] = {"per_seed": ratios, "ci": mean_ci(reached)}
        per = ", ".join(f"{s}: {'-' if x is None else f'{x:.2f}'}" for s, x in sorted(ratios.items()))
        lines.append(f"| {NAME.get(m, m)} | {len(reached)} of {len(ratios)} | {per} | {fmt(data[m]['ci'], 1.0, digits=2)} |")
    return "\n".join(lines), data


def diagnostics(runs: list[dict]) -> tuple[str, dict]:
    keys = ["prompt_zero_variance", "step_zero_variance", "duplicate_leaves", "identical_siblings", "adv_max",
            "adv_min", "response_length", "entropy", "flat_over_tree", "step_seconds", "gen_seconds"]
    depths = sorted({k for r in runs for k in r["diagnostics"] if k.startswith("zero_variance_depth_")})
    keys += depths
    lines = ["| method | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    data: dict = {}
    for m in methods(runs):
        rs = list(by_seed(runs, m).values())
        data[m] = {k: mean_ci([r["diagnostics"].get(k) for r in rs if r["diagnostics"].get(k) is not None]) for k in keys}
        lines.append(f"| {NAME.get(m, m)} | " + " | ".join(
            "n/a" if data[m][k]["n"] == 0 else f"{data[m][k]['mean']:.3g}" for k in keys) + " |")
    return "\n".join(lines), data


def verdict(d: dict, what: str, unit: str = "points", scale: float = 100.0) -> str:
    """One sentence: the paired difference, its CI, p, and what it says at this number of seeds."""
    if not d or d["n"] < 2:
        return f"{what}: fewer than two paired seeds, no verdict."
    m, lo, hi = (scale * d[k] for k in ("mean", "lo", "hi"))
    if lo > 0:
        word = "higher"
    elif hi < 0:
        word = "lower"
    else:
        word = "not distinguishable from zero"
    return (f"{what}: {m:+.1f} {unit} (95% CI [{lo:+.1f}, {hi:+.1f}], paired t p = {_p(d['t_p'])}, "
            f"sign-flip p = {_p(d['sign_flip_p'])}, {d['n']} seeds): {word}.")


def plot(runs: list[dict], path: Path) -> None:
    """Top: average accuracy, mean over seeds. Bottom: the gain over each run's own step-0
    accuracy (every method of a seed shares it), mean and 95% band over seeds: the seeds' different
    starting points, which widen the top row's spread, cancel there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 7.6), sharey="row")
    for col, (axis, label) in enumerate(zip(("step", "tokens", "seconds"),
                                            ("verl training step", "cumulative generated tokens",
                                             "training seconds (timing_s/step)"))):
        for k, m in enumerate(methods(runs)):
            rs = [r for r in by_seed(runs, m).values() if r["validations"]]
            if not rs:
                continue
            end = min(r["validations"][-1][axis] for r in rs)
            xs = sorted({v[axis] for r in rs for v in r["validations"] if v[axis] <= end}) if axis == "step" else \
                [end * i / 40 for i in range(41)]
            style = "o-" if axis == "step" else "-"
            for row, gain in ((0, False), (1, True)):
                ax = axes[row, col]
                stats = [mean_ci([_at(r, axis, x, gain) for r in rs]) for x in xs]
                ax.plot(xs, [100 * s["mean"] for s in stats], style, color=f"C{k}",
                        label=f"{NAME.get(m, m)} ({len(rs)} seeds)")
                if gain and len(rs) > 1:
                    ax.fill_between(xs, [100 * s["lo"] for s in stats], [100 * s["hi"] for s in stats],
                                    color=f"C{k}", alpha=0.15)
        for row in (0, 1):
            axes[row, col].grid(alpha=0.3)
        axes[1, col].set_xlabel(label)
    axes[0, 0].set_ylabel("held-out accuracy, average of the sets (%)")
    axes[1, 0].set_ylabel("gain over step 0 (points), 95% band")
    axes[0, 0].legend()
    fig.suptitle("verl on CPU, tiny Qwen2, chains task: mean over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _at(run: dict, axis: str, x: float, gain: bool) -> Optional[float]:
    y = interpolate(*curve(run, axis), x)
    if y is None or not gain:
        return y
    return y - run["validations"][0]["mean"]


def build(runs: list[dict]) -> tuple[str, dict]:
    step = compare_step(runs)
    if step is None:
        raise ValueError("no validation after step 0 in these runs")
    t1, d1 = equal_steps(runs, step)
    t2, d2 = versus_grpo(runs, step)
    t3, d3 = equal_compute(runs, "tokens")
    t3s, d3s = equal_compute(runs, "seconds")
    t4, d4 = tokens_to_reach(runs, step)
    t5, d5 = diagnostics(runs)
    claims = [verdict(d2.get("treerpo", {}).get("avg"), f"TreeRPO - GRPO, average accuracy at equal steps (step {step})"),
              verdict(d2.get("treepo", {}).get("avg"), f"TreePO - GRPO, average accuracy at equal steps (step {step})"),
              verdict(d2.get("treerpo", {}).get("response_tokens"), "TreeRPO - GRPO, validation response length",
                      "tokens", 1.0)]
    for m in ("treerpo", "treepo"):
        diffs = d3.get(m, {}).get("minus_grpo")
        if diffs:
            claims.append(verdict(diffs[-1], f"{NAME[m]} - GRPO, average accuracy at equal generated tokens "
                                             f"({d3['points'][-1] / 1e3:.0f}k)"))
    for m in ("treerpo", "treepo"):
        if m in d4:
            ci, n = d4[m]["ci"], len(d4[m]["per_seed"])
            claims.append(f"{NAME[m]} tokens to reach GRPO's step-{step} accuracy: " + (
                f"{ci['mean']:.2f}x GRPO's (95% CI [{ci['lo']:.2f}, {ci['hi']:.2f}]) in the {ci['n']} of {n} seeds "
                f"that reached it" if ci["n"] else f"reached in none of {n} seeds") + ".")
    text = "\n\n".join([
        f"### Equal steps (step {step}): held-out accuracy (%), mean [95% CI] over seeds", t1,
        f"### Each tree method minus GRPO at step {step}, paired by seed (points; response tokens in tokens)", t2,
        "### Equal generated tokens: average accuracy (%)", t3,
        "### Equal training seconds: average accuracy (%)", t3s,
        "### Tokens to reach GRPO's accuracy", t4,
        "### Why: diagnostics (means over seeds of each run's median over its steps)", t5,
        "### Verdicts", "\n".join(f"- {c}" for c in claims),
    ])
    return text, {"step": step, "equal_steps": d1, "versus_grpo": d2, "equal_tokens": d3, "equal_seconds": d3s,
                  "tokens_to_reach": d4, "diagnostics": d5, "verdicts": claims}


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m treerpo.tiny.report RUNS_DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    runs = load_runs(out) if out.is_dir() else []
    if not runs:
        print(f"{out}: no runs (expected <estimator>-seed<k>/ folders with metrics.jsonl)", file=sys.stderr)
        return 1
    try:
        text, data = build(runs)
    except ValueError as e:
        print(f"{out}: {e}", file=sys.stderr)
        return 1
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str))
    plot(runs, out / "curves.png")
    print(text)
    print(f"\nwrote {out}/results.md, results.json, runs.json, curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summarise `treerpo train` runs (verl on CPU) into the miniature-reproduction table and plot.

    python -m treerpo.tiny.report runs/tiny     # reads <estimator>-seed<k>/summary.json + metrics.jsonl

Per estimator over seeds: held-out accuracy before RL (verl's validation at step 0) and after
the last step, mean and std; the change; steps and seconds per run. Writes
results.md, results.json and learning_curves.png (held-out accuracy against verl step, one
line per run, one colour per estimator).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from treerpo.tiny.metrics import read_run_metrics, val_key

ORDER = ["grpo", "treerpo", "treepo"]


def collect(out: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for d in sorted(out.glob("*-seed*")):
        s = d / "summary.json"
        if not s.exists():
            continue
        summary = json.loads(s.read_text())
        summary["rows"] = read_run_metrics(d)
        runs[summary["estimator"]].append(summary)
    return runs


def table(runs: dict[str, list[dict]]) -> tuple[str, dict]:
    def ms(xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            return float("nan"), float("nan")
        return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

    lines = ["| estimator | seeds | held-out acc before RL (%) | after (%) mean ± std | change (points) | "
             "verl steps | s per run |", "|---|---|---|---|---|---|---|"]
    out = {}
    for est in [e for e in ORDER if e in runs] + [e for e in runs if e not in ORDER]:
        rs = runs[est]
        start = ms([100 * r["val_acc_start"] for r in rs if r["val_acc_start"] is not None])
        final = ms([100 * r["val_acc_final"] for r in rs if r["val_acc_final"] is not None])
        delta = ms([100 * (r["val_acc_final"] - r["val_acc_start"]) for r in rs
                    if r["val_acc_final"] is not None and r["val_acc_start"] is not None])
        secs = statistics.mean(r["seconds"] for r in rs)
        steps = statistics.mean(r["steps"] for r in rs)
        out[est] = {"seeds": len(rs), "start": start, "final": final, "change": delta, "steps": steps, "seconds": secs,
                    "per_seed": {r["seed"]: (r["val_acc_start"], r["val_acc_final"]) for r in rs}}
        lines.append(f"| {est} | {len(rs)} | {start[0]:.1f} | {final[0]:.1f} ± {final[1]:.1f} | "
                     f"{delta[0]:+.1f} ± {delta[1]:.1f} | {steps:.0f} | {secs:.0f} |")
    return "\n".join(lines), out


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = [e for e in ORDER if e in runs] + [e for e in runs if e not in ORDER]
    for k, est in enumerate(names):
        for j, r in enumerate(runs[est]):
            key = val_key(r["rows"])
            pts = [(row["step"], 100 * row[key]) for row in r["rows"] if key and key in row]
            if pts:
                ax.plot(*zip(*pts), "o-", color=f"C{k}", alpha=0.8, label=est if j == 0 else None)
    ax.set_xlabel("verl training step")
    ax.set_ylabel("held-out accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    runs = collect(out)
    if not runs:
        print(f"no runs under {out} (expected <estimator>-seed<k>/summary.json)", file=sys.stderr)
        return 1
    text, data = table(runs)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(data, indent=2))
    plot(runs, out / "learning_curves.png")
    print(text)
    print(f"\nwrote {out}/results.md, results.json, learning_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summarise local-mode runs into the miniature-reproduction table and plot.

    python -m verl_ext.report runs/tiny        # reads <estimator>-seed<k>/ dirs, writes results.md/.json + plot

Per estimator over seeds: final greedy accuracy (mean and std), accuracy after warm-up (the
common starting point), generated RL tokens and mean response length.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from verl_ext.local_train import plot_curves

ORDER = ["grpo", "treerpo", "treepo"]


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    runs: dict[str, list[dict]] = defaultdict(list)
    curves: dict[str, list[list[dict]]] = defaultdict(list)
    for d in sorted(out.glob("*-seed*")):
        s = d / "summary.json"
        if not s.exists() or d.name.startswith("warmup"):
            continue
        summary = json.loads(s.read_text())
        runs[summary["estimator"]].append(summary)
        rows = list(csv.DictReader(open(d / "metrics.csv")))
        for r in rows:
            for k in ("generated_tokens", "eval_acc"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else None
        curves[summary["estimator"]].append(rows)
    if not runs:
        print(f"no runs under {out}", file=sys.stderr)
        return 1

    def ms(xs):
        return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)

    table = {}
    lines = ["| estimator | seeds | start acc (%) | final acc (%) mean ± std | RL tokens (mean) | mean response len |",
             "|---|---|---|---|---|---|"]
    for est in [e for e in ORDER if e in runs] + [e for e in runs if e not in ORDER]:
        rs = runs[est]
        start, final = ms([100 * r["warmup_acc"] for r in rs]), ms([100 * r["final_acc"] for r in rs])
        tokens, length = ms([r["generated_tokens"] for r in rs]), ms([r["mean_response_len"] for r in rs])
        table[est] = {"seeds": len(rs), "start_acc": start, "final_acc": final, "tokens": tokens[0],
                      "mean_response_len": length[0], "seconds": sum(r["seconds"] for r in rs)}
        lines.append(f"| {est} | {len(rs)} | {start[0]:.1f} | {final[0]:.1f} ± {final[1]:.1f} | {tokens[0]:,.0f} | "
                     f"{length[0]:.1f} |")
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(table, indent=2))
    plot_curves(dict(curves), out / "learning_curves.png")
    print(text)
    print(f"\nwrote {out}/results.md, results.json, learning_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

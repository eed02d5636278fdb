"""The miniature reproduction's grid: GRPO, TreeRPO and TreePO on the `chains` task, several seeds.

    python -m treerpo.tiny.grid --out runs/chains                 # 5 seeds x 3 methods, then the report
    python -m treerpo.tiny.grid --out runs/chains --resume        # continue a grid that was stopped
    python -m treerpo.tiny.grid --check-only                      # compose every run's config, launch nothing

Every run is `treerpo train --task chains` (verl's trainer on CPU, treerpo/tiny/launch.py) in
`<out>/<estimator>-seed<k>/`. The three runs of a seed start from one warm-up (`<out>/base-seed<k>/`,
made once) and see the same prompts in the same order (`data.shuffle=False` on the seed's stream).

Budgets, both ways:
  equal steps   every method validates at step 40 (test_freq 8) with equal prompts per step (32)
                and equal leaves per prompt (8): the papers' protocol
  equal tokens  a tree decodes fewer tokens a step than flat sampling of the same leaves (about
                0.64 of them for TreeRPO N=2 D=3 at this task's lengths, about 0.75 for TreePO
                w=8 l=8), so the tree runs go on past step 40 (STEPS) until their cumulative
                generated tokens cover GRPO's at step 40; the report reads every curve at equal
                tokens and at equal training seconds

Ablations (`--ablation treerpo_group=treerpo:tree.advantage.norm=group`) add a row: the same
estimator with a setting from the papers changed, in `<out>/<label>-seed<k>/`, compared with GRPO
like the others. A run whose `summary.json` exists is finished and skipped. Without `--resume`, an unfinished
run starts over; with it, it continues from its last checkpoint (verl saves one at the end
only, so an interrupted run usually starts over either way). Progress: one line per run as it
starts and ends, verl's own progress bar in between. The report (treerpo/tiny/report.py) is
written to `<out>/` at the end, or alone with `--report-only`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from treerpo.tiny import recipe

ESTIMATORS = ("grpo", "treerpo", "treepo")
# steps per method: GRPO the papers' protocol length; the trees long enough to cover its tokens
STEPS = {"grpo": 40, "treerpo": 64, "treepo": 56}
SEEDS = (0, 1, 2, 3, 4)


def grid_runs(out: Path, seeds, estimators, steps=None, ablations=()) -> list[recipe.TinyRun]:
    """The grid's runs, seed by seed; `ablations` are (label, estimator, overrides): an extra row
    of that estimator with a setting changed, in `<out>/<label>-seed<k>/`."""
    steps = {**STEPS, **(steps or {})}
    rows = [(est, est, []) for est in estimators] + list(ablations)
    return [recipe.tiny_run("chains", estimator=est, seed=seed, steps=steps[est], out=str(out / f"{label}-seed{seed}"),
                            extra=list(extra))
            for seed in seeds for label, est, extra in rows]


def ablation(text: str) -> tuple[str, str, list[str]]:
    """`LABEL=ESTIMATOR:KEY=VALUE[,KEY=VALUE]`, e.g. `treerpo_tau0=treerpo:tree.advantage.tau=0`."""
    label, sep, rest = text.partition("=")
    est, sep2, overrides = rest.partition(":")
    if not sep or not sep2 or not re.fullmatch(r"[a-z][a-z0-9_]*", label) or est not in ESTIMATORS or not overrides:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=ESTIMATOR:KEY=VALUE[,KEY=VALUE] with a lower-case "
                                         f"label and an estimator of {ESTIMATORS}")
    return label, est, overrides.split(",")


def finished(run: recipe.TinyRun) -> bool:
    return (Path(run.out) / "summary.json").exists()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m treerpo.tiny.grid", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/chains", help="the grid's folder (default: %(default)s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="(default: 0 1 2 3 4)")
    ap.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    ap.add_argument("--ablation", type=ablation, action="append", default=[],
                    help="an extra row: LABEL=ESTIMATOR:KEY=VALUE[,...], e.g. treerpo_group=treerpo:tree.advantage.norm=group")
    ap.add_argument("--resume", action="store_true", help="continue unfinished runs from their last checkpoint")
    ap.add_argument("--check-only", action="store_true", help="compose and validate every run's config, launch nothing")
    ap.add_argument("--report-only", action="store_true", help="write the report from the runs there, launch nothing")
    args = ap.parse_args(argv)
    from treerpo import quiet

    quiet.install()
    out = Path(args.out)
    runs = grid_runs(out, args.seeds, args.estimators, ablations=args.ablation)
    if args.check_only:
        from treerpo.tiny import launch

        bad = [r.out for r in runs if launch.check(r, quiet=True) != 0]
        print(f"{len(runs) - len(bad)} of {len(runs)} run configs compose" + (f"; failed: {bad}" if bad else ""))
        return 1 if bad else 0
    if not args.report_only:
        from treerpo.tiny import launch, summary

        todo = [r for r in runs if not finished(r)]
        print(f"grid {out}: {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to go "
              f"(6-10 minutes each on 2 cores with AVX-512)", flush=True)
        for i, run in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {run.estimator} seed {run.seed}, {run.steps} steps -> {run.out}", flush=True)
            t0 = time.time()
            resume = args.resume and (Path(run.out) / "checkpoints").exists()
            try:
                result = launch.train(run, resume=resume)
            except RuntimeError as e:
                print(f"[{i}/{len(todo)}] failed: {e}", file=sys.stderr, flush=True)
                return 1
            print(f"[{i}/{len(todo)}] done in {time.time() - t0:.0f} s: " + summary.report(result).replace("\n", "; "),
                  flush=True)
    from treerpo.tiny import report

    return report.main([str(out)])


if __name__ == "__main__":
    sys.exit(main())

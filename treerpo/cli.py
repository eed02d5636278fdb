"""`treerpo` command line.

    treerpo train [--task arith|chains] [--estimator grpo|treerpo|treepo] [--seed 0] [--steps 16]
                  [--out DIR] [overrides ...]
    treerpo warmup [--task arith|chains] [--seed 0] --out DIR
    treerpo view DUMP.jsonl [-o trees.html] [--step S] [--prompt ID]


`train` runs verl 0.9.1's own trainer on this machine's CPU on the embedded default (a tiny
Qwen2 on the bundled arithmetic task; treerpo/tiny/). Extra arguments are Hydra
overrides for verl's config, passed last (e.g. `tree.advantage.norm=group`,
`actor_rollout_ref.actor.optim.lr=5e-5`).

`warmup` makes the starting checkpoint `train` uses for a seed (a supervised warm-up of the tiny
model; treerpo/tiny/warmup.py). The project ships seed 0's, made with
`treerpo warmup --seed 0 --out examples/tiny/base-seed0`; `train` copies it instead of warming up.

`view` turns a tree dump (`trees.jsonl` of a run, `tree.rollout.dump_path`) into one self-contained
HTML file: each tree with its segments, V(node), advantages and groups (treerpo/tools/tree_view.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from treerpo import quiet
from treerpo.tiny import launch, recipe, summary


def _step_tokens(text: str):
    """`18` (every level) or `10,20` (one length per level)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or a comma-separated list of ints, got {text!r}")
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    """The `treerpo` parser: one subcommand per task, each option with its help line."""
    ap = argparse.ArgumentParser(prog="treerpo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbose", dest="verbose_all", action="store_true",
                    help="show third-party warnings too (also TREERPO_VERBOSE=1; treerpo/quiet.py)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{train,warmup,view}")
    tr = sub.add_parser("train", help="RL with verl's trainer on CPU, tiny model",
                        description=launch.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = recipe.TinyRun()

    def dflt(name: str) -> str:
        """The help's default: TinyRun's (the `arith` task's), and the `chains` preset's where it differs."""
        text = str(getattr(defaults, name)).replace("(", "").replace(")", "").replace(" ", "")
        other = recipe.PRESETS["chains"].get(name)
        if other is not None and other != getattr(defaults, name):
            text += ", chains: " + str(other).replace("(", "").replace(")", "").replace(" ", "")
        return f"(default: {text})"

    tr.add_argument("--task", choices=sorted(recipe.PRESETS), default=defaults.task,
                    help="`arith`: 2 operations, the quickstart; `chains`: 3-5 operations with validation sets "
                         "chain3..chain6, the miniature reproduction's task and sizes (default: %(default)s)")
    tr.add_argument("--estimator", choices=sorted(recipe.METHOD), default=defaults.estimator,
                    help="verl's `grpo` (flat sampling) or a tree method (default: %(default)s)")
    tr.add_argument("--seed", type=int, default=defaults.seed,
                    help="seed of the warm-up, the data and verl's run (default: %(default)s)")
    tr.add_argument("--steps", type=int, default=None, help="verl training steps " + dflt("steps"))
    tr.add_argument("--prompts-per-step", type=int, default=None,
                    help="data.train_batch_size " + dflt("prompts_per_step"))
    tr.add_argument("--test-freq", type=int, default=None,
                    help="validate every N steps, before training and after the last " + dflt("test_freq"))
    tr.add_argument("--task-steps", type=int, default=None,
                    help="operations per `arith` problem; a new value warms up its own base " + dflt("task_steps"))
    tr.add_argument("--branching", type=int, default=None, help="TreeRPO N " + dflt("branching"))
    tr.add_argument("--depth", type=int, default=None, help="TreeRPO D " + dflt("depth"))
    tr.add_argument("--step-tokens", type=_step_tokens, default=None,
                    help="TreeRPO L_step, or one length per level (`10,20`); the response length is their "
                         "sum over the D levels " + dflt("step_tokens"))
    tr.add_argument("--out", default=None,
                    help="output directory (default: runs/tiny/<estimator>-seed<seed>; chains: runs/chains/...)")
    tr.add_argument("--verbose", action="store_true",
                    help="stream verl's own output instead of a progress bar, third-party warnings included")
    tr.add_argument("--resume", action="store_true",
                    help="continue from the last checkpoint in --out (default: a fresh run, earlier outputs removed)")
    tr.add_argument("--check-only", action="store_true",
                    help="compose and validate the config (verl_ext.check), launch nothing")
    tr.add_argument("overrides", nargs="*", help="Hydra overrides for verl's config, passed last")
    wu = sub.add_parser("warmup", help="make the tiny model's starting checkpoint for a seed",
                        description="The supervised warm-up `train` starts from (treerpo/tiny/warmup.py).")
    wu.add_argument("--seed", type=int, default=defaults.seed, help="model init and data seed (default: %(default)s)")
    wu.add_argument("--task", choices=sorted(recipe.PRESETS), default=defaults.task,
                    help="the task to warm up on (default: %(default)s)")
    wu.add_argument("--task-steps", type=int, default=defaults.task_steps,
                    help="operations per arithmetic problem (default: %(default)s)")
    wu.add_argument("--out", required=True, help="directory for the checkpoint (HF format) and warmup.json")
    vw = sub.add_parser("view", help="write a self-contained HTML viewer of a tree dump",
                        description=tree_view_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    vw.add_argument("dump", help="the JSONL tree dump (a run's trees.jsonl, tree.rollout.dump_path)")
    vw.add_argument("-o", "--out", default=None, help="HTML file to write (default: the dump's name with .html)")
    vw.add_argument("--step", type=int, default=None, help="only the trees of this training step")
    vw.add_argument("--prompt", default=None, help="only the trees of this prompt uid (or a prefix of it)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet.install(args.verbose_all or getattr(args, "verbose", False))
    if args.cmd == "view":
        return view(args)
    if args.cmd == "warmup":
        from treerpo.tiny.warmup import warm_up

        run = recipe.tiny_run(args.task, seed=args.seed, task_steps=args.task_steps)
        _, _, acc = warm_up(run.warmup_config(), out=args.out)
        print(f"warm-up: {args.out} ({acc:.1%} greedy held-out accuracy)")
        return 0
    sizes = {k: getattr(args, k) for k in ("steps", "prompts_per_step", "test_freq", "task_steps", "branching",
                                            "depth", "step_tokens") if getattr(args, k) is not None}
    run = recipe.tiny_run(args.task, estimator=args.estimator, seed=args.seed, out=args.out, **sizes,
                          extra=list(args.overrides))
    if args.check_only:
        return launch.check(run)
    try:
        result = launch.train(run, verbose=args.verbose, resume=args.resume)
    except RuntimeError as e:
        print(f"treerpo train: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in result.items() if k != "val_curve"}, indent=2))
    print(summary.report(result))
    print(f"metrics: {run.out}/metrics.jsonl  curve: {run.out}/learning_curve.png  "
          f"checkpoints: {run.out}/checkpoints/  log: {run.out}/train.log")
    return 0


def tree_view_doc() -> str:
    from treerpo.tools import tree_view, tree_view_page

    return tree_view.__doc__ + "\n" + tree_view_page.__doc__


def view(args) -> int:
    """`treerpo view`: write the page, say where it is and how many trees it holds."""
    import os

    from treerpo.tools.tree_view import write_view

    out = args.out or os.path.splitext(args.dump)[0] + ".html"
    try:
        n = write_view(args.dump, out, step=args.step, prompt=args.prompt)
    except (OSError, ValueError) as e:
        print(f"treerpo view: {e}", file=sys.stderr)
        return 1
    print(f"{out}: {n} trees (open it in any browser; it needs no network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

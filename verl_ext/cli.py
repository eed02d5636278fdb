"""`treerpo` command line.

    treerpo train [--estimator grpo|treerpo|treepo] [--seed 0] [--out runs/local] [key=value ...]

`key=value` sets any field of verl_ext.local_train.LocalConfig (e.g. token_budget=100000,
prompts_per_step=8, tree_advantage.norm=group).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from verl_ext.local_train import LocalConfig, LocalTrainer


def parse_overrides(cfg: LocalConfig, items: list[str]) -> LocalConfig:
    types = {f.name: f.type for f in dataclasses.fields(LocalConfig)}
    changes: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"treerpo: expected key=value, got {item!r}")
        if key.startswith("tree_advantage."):
            changes.setdefault("tree_advantage", dict(cfg.tree_advantage))[key.split(".", 1)[1]] = json.loads(value) \
                if value[:1] in "0123456789-[{tf" and value not in ("true", "false") else \
                {"true": True, "false": False}.get(value, value)
            continue
        if key not in types:
            raise SystemExit(f"treerpo: unknown setting {key!r}; known: {sorted(types)}")
        cur = getattr(cfg, key)
        if cur is None or isinstance(cur, str):
            changes[key] = None if value in ("null", "None") else value
        elif isinstance(cur, bool):
            changes[key] = value.lower() in ("1", "true", "yes")
        else:
            changes[key] = type(cur)(value)
    return dataclasses.replace(cfg, **changes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="treerpo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="local CPU mode: warm-up then RL on the arithmetic task with a tiny model")
    tr.add_argument("--estimator", choices=["grpo", "treerpo", "treepo"], default="treerpo")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default=None, help="output directory (default runs/local/<estimator>-seed<seed>)")
    tr.add_argument("overrides", nargs="*", help="key=value settings of LocalConfig")
    args = ap.parse_args(argv)
    cfg = LocalConfig(estimator=args.estimator, seed=args.seed,
                      out=args.out or f"runs/local/{args.estimator}-seed{args.seed}")
    cfg = parse_overrides(cfg, args.overrides)
    summary = LocalTrainer(cfg).train()
    print(json.dumps(summary, indent=2))
    print(f"metrics: {cfg.out}/metrics.csv  curve: {cfg.out}/learning_curve.png  checkpoints: {cfg.out}/checkpoints/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

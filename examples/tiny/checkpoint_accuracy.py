"""Held-out accuracy of a `treerpo train` checkpoint (or the warm-up model), through transformers.

    python examples/tiny/checkpoint_accuracy.py runs/tiny/treerpo-seed0/checkpoints/global_step_40/actor \
        runs/tiny/base-seed0
    python examples/tiny/checkpoint_accuracy.py runs/tiny/base-seed0 runs/tiny/base-seed0 \
        --problems 256 --samples 8 --temperature 1.0

Loads verl's FSDP state dict (`model_world_size_1_rank_0.pt`) into the warm-up model (or, given the
warm-up directory itself, that model) and scores the held-out problems: greedily, as the warm-up
and the quickstart's validation do, and with `--samples k`, also k answers per problem at
`--temperature` (mean over answers as verl's `acc/mean@k`, pass@k, and the fraction of problems
whose k answers disagree). The problems are the run's validation set (the warm-up's held-out
problems, `warmup.json`); greedy accuracy compared with a greedy verl validation at the same step
(vLLM) checks that the weights vLLM sampled with are the weights verl trained (docs/CPU.md,
"Tuning the miniature"; run both sides in float32 for an exact match).
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from treerpo.tiny.warmup import WarmupConfig, greedy_accuracy, held_out_problems, sampled_accuracy


def load(actor_dir: Path, base: Path):
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32).eval()
    if actor_dir.resolve() != base.resolve():
        shard = actor_dir / "model_world_size_1_rank_0.pt"
        if not shard.exists():
            raise SystemExit(f"{shard} not found: expected verl's FSDP checkpoint of a run on one process")
        state = torch.load(shard, weights_only=False, map_location="cpu")
        state = {k: (v.to_local() if hasattr(v, "to_local") else v).float() for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    return model, AutoTokenizer.from_pretrained(base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("actor_dir", type=Path, help="checkpoints/global_step_<k>/actor of a world-size-1 run, "
                                                 "or the warm-up directory itself")
    ap.add_argument("base", type=Path, help="the warm-up checkpoint the run started from (runs/tiny/base-seed<k>)")
    ap.add_argument("--problems", type=int, default=None,
                    help="the first N held-out problems (default: all, i.e. the run's validation set)")
    ap.add_argument("--samples", type=int, default=0, help="also score k sampled answers per problem")
    ap.add_argument("--temperature", type=float, default=1.0, help="for --samples (default: %(default)s, the "
                                                                   "rollout temperature of treerpo train)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed for --samples")
    args = ap.parse_args()
    model, tok = load(args.actor_dir, args.base)
    config = json.loads((args.base / "warmup.json").read_text())["config"]
    config.setdefault("held_out_distinct", False)  # a warm-up from before the option drew its held-out set so
    info = WarmupConfig(**{k: v for k, v in config.items() if k in WarmupConfig.__dataclass_fields__})
    probs = held_out_problems(info)[: args.problems]
    acc = greedy_accuracy(model, tok, probs, info.max_tokens)
    print(f"greedy held-out accuracy of {args.actor_dir}: {acc:.4%} ({len(probs)} problems)")
    if args.samples:
        s = sampled_accuracy(model, tok, probs, info.max_tokens, args.temperature, args.samples, args.seed)
        print(f"sampled at T={args.temperature}, {args.samples} per problem: mean@{args.samples} {s['mean']:.2%}, "
              f"pass@{args.samples} {s['pass']:.2%}, problems with mixed answers {s['mixed']:.2%}")


if __name__ == "__main__":
    main()

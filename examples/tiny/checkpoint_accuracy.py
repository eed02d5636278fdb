"""Greedy held-out accuracy of a `treerpo train` actor checkpoint, through transformers.

    python examples/tiny/checkpoint_accuracy.py runs/tiny/treerpo-seed0/checkpoints/global_step_40/actor \
        runs/tiny/base-seed0

Loads verl's FSDP state dict (`model_world_size_1_rank_0.pt`) into the warm-up model and scores
the 128 held-out problems greedily, as the warm-up does. Compared with verl's validation at the
same step (vLLM), it checks that the weights vLLM sampled with are the weights verl trained
(docs/CPU.md, "Tuning the miniature"; run both sides in float32 for an exact match).
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from treerpo.warmup import WarmupConfig, greedy_accuracy, held_out_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("actor_dir", type=Path, help="checkpoints/global_step_<k>/actor of a world-size-1 run")
    ap.add_argument("base", type=Path, help="the warm-up checkpoint the run started from (runs/tiny/base-seed<k>)")
    args = ap.parse_args()
    shard = args.actor_dir / "model_world_size_1_rank_0.pt"
    if not shard.exists():
        raise SystemExit(f"{shard} not found: expected verl's FSDP checkpoint of a run on one process")
    state = torch.load(shard, weights_only=False, map_location="cpu")
    state = {k: (v.to_local() if hasattr(v, "to_local") else v).float() for k, v in state.items()}
    model = AutoModelForCausalLM.from_pretrained(args.base, torch_dtype=torch.float32).eval()
    model.load_state_dict(state, strict=True)
    tok = AutoTokenizer.from_pretrained(args.base)
    info = WarmupConfig(**{k: v for k, v in json.loads((args.base / "warmup.json").read_text())["config"].items()
                           if k in WarmupConfig.__dataclass_fields__})
    acc = greedy_accuracy(model, tok, held_out_problems(info), info.max_tokens)
    print(f"greedy held-out accuracy of {args.actor_dir}: {acc:.4%} ({info.eval_problems} problems)")


if __name__ == "__main__":
    main()

"""Tree vs flat sampling at equal leaf count and equal maximum length, on the local engine.

Outputs have fixed length (the engine ignores EOS, and the sampler is given an EOS id the model
never emits), so the decoded-token counts can be checked against the analytic count of
ALGORITHMS.md section 3:

    TreeRPO (N, D, L):  tree L * (N + N^2 + ... + N^D)   vs  flat N^D * D * L
    TreePO (w, b, l, d, k0 = b):  tree l * (sum of paths per round)  vs  flat w * d * l

Both runs sample all prompts concurrently (the engine batches concurrent requests). Prints
tokens, wall time, tokens/s and trajectories/s, tree over flat.

    python -m benchmarks.bench_rollout                         # tiny model, CPU
    python -m benchmarks.bench_rollout --shape qwen2.5-1.5b --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from treerpo.engines.local import LocalEngine
from treerpo.sampling.options import RolloutOptions
from treerpo.sampling.sampler import sample_tree
from treerpo.sampling.segments import SegmentSource

SHAPES = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128),
    # Qwen2.5-1.5B's shape (random weights): 28 layers, 1536 hidden, 12 heads / 2 KV heads
    "qwen2.5-1.5b": dict(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960),
}
NEVER = -1  # an EOS id no model emits: every segment has its full length


def analytic(opts: RolloutOptions) -> tuple[int, int]:
    if opts.method == "treerpo":
        n, d, l = opts.branching, opts.depth, opts.step_tokens
        return l * sum(n**k for k in range(1, d + 1)), n**d * d * l
    w, b, d, l = opts.leaves, opts.branch, opts.max_segments, opts.segment_tokens
    paths, per_round = opts.init_branches[0], []
    for _ in range(d):
        per_round.append(paths)
        paths = min(w, paths * b)
    return l * sum(per_round), w * d * l


async def run_tree(engine, prompts, opts, max_len):
    src = SegmentSource(engine, {"temperature": 1.0, "ignore_eos": True}, NEVER)
    trees = await asyncio.gather(*(sample_tree(p, f"p{i}", src, opts, max_len) for i, p in enumerate(prompts)))
    return sum(len(t.leaves()) for t in trees)


async def run_flat(engine, prompts, leaves, max_len):
    params = {"temperature": 1.0, "ignore_eos": True, "max_tokens": max_len, "logprobs": True}
    outs = await asyncio.gather(*(engine.generate(f"p{i}-{j}", prompt_ids=p, sampling_params=params)
                                  for i, p in enumerate(prompts) for j in range(leaves)))
    return len(outs)


def measure(engine, coro_fn):
    before = dict(engine.stats)
    t0 = time.perf_counter()
    trajectories = asyncio.run(coro_fn())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    return trajectories, engine.stats["generated_tokens"] - before["generated_tokens"], secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["treerpo", "treepo", "both"], default="both")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--N", type=int, default=4, help="treerpo branching")
    ap.add_argument("--D", type=int, default=3, help="treerpo depth")
    ap.add_argument("--L", type=int, default=16, help="treerpo step tokens")
    ap.add_argument("--w", type=int, default=16, help="treepo leaves")
    ap.add_argument("--b", type=int, default=2, help="treepo branching")
    ap.add_argument("--l", type=int, default=8, help="treepo segment tokens")
    ap.add_argument("--d", type=int, default=6, help="treepo max segments")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-batch", type=int, default=256)
    args = ap.parse_args()

    from treerpo.tiny.model import build_model

    model = build_model(4096, seed=0, **SHAPES[args.shape]).to(device=args.device, dtype=getattr(torch, args.dtype))
    engine = LocalEngine(model, eos_token_ids=[NEVER], pad_token_id=0, max_batch_size=args.max_batch)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, 4000, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]

    methods = ["treerpo", "treepo"] if args.method == "both" else [args.method]
    print(f"model {args.shape} on {args.device} ({args.dtype}), {args.prompts} prompts of {args.prompt_len} tokens, "
          f"torch threads {torch.get_num_threads()}")
    for method in methods:
        if method == "treerpo":
            opts = RolloutOptions(method="treerpo", branching=args.N, depth=args.D, step_tokens=args.L)
            shape = f"N={args.N} D={args.D} L={args.L}"
        else:
            opts = RolloutOptions(method="treepo", leaves=args.w, branch=args.b, segment_tokens=args.l,
                                  max_segments=args.d, init_branches=args.b)
            shape = f"w={args.w} b={args.b} l={args.l} d={args.d}"
        max_len = opts.max_response_tokens
        leaves = opts.leaves_per_tree
        tree_expect, flat_expect = analytic(opts)
        measure(engine, lambda: run_flat(engine, prompts[:1], 2, 4))  # warm-up
        tt, tree_tok, tree_s = measure(engine, lambda: run_tree(engine, prompts, opts, max_len))
        ft, flat_tok, flat_s = measure(engine, lambda: run_flat(engine, prompts, leaves, max_len))
        p = args.prompts
        print(f"\n{method} ({shape}): {leaves} leaves per prompt, max length {max_len}")
        print(f"{'':6}{'tokens':>9}{'analytic':>10}{'dev %':>7}{'secs':>8}{'tok/s':>9}{'traj/s':>8}")
        for name, traj, tok, exp, secs in (("tree", tt, tree_tok, tree_expect * p, tree_s),
                                           ("flat", ft, flat_tok, flat_expect * p, flat_s)):
            print(f"{name:6}{tok:>9}{exp:>10}{100 * (tok - exp) / exp:>7.2f}{secs:>8.2f}{tok / secs:>9.0f}"
                  f"{traj / secs:>8.1f}")
        print(f"tree/flat: decoded tokens {tree_tok / flat_tok:.3f}, wall time {tree_s / flat_s:.3f}, "
              f"trajectories/s {(tt / tree_s) / (ft / flat_s):.2f}x, tokens/s {(tree_tok / tree_s) / (flat_tok / flat_s):.2f}x")


if __name__ == "__main__":
    main()

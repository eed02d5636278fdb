"""Tree vs flat sampling at equal leaf count and equal maximum length, on the local engine or vLLM.

With `--eos ignore` outputs have fixed length (the engine ignores EOS and the sampler is given an
EOS id the model never emits), so the decoded-token counts must equal the analytic count of
ALGORITHMS.md section 3:

    TreeRPO (N, D, L):  tree L * (N + N^2 + ... + N^D)   vs  flat N^D * D * L
    TreePO (w, b, l, d, k0 = b):  tree l * (sum of paths per round)  vs  flat w * d * l
                                  (when the paths reach w within d rounds; else the sampler's
                                  fallback re-branches and the tree decodes more: a note says so)

With `--eos model` the sampler and the engine stop at the model's real EOS, so paths may end
early and the analytic count is an upper bound. Every run samples all its prompts (trees)
concurrently, each run with fresh random prompts (so no run reads another's prompts from a prefix
cache). Per shape it prints, for tree and flat: trajectories, decoded tokens against the
analytic count, prompt tokens sent to the engine, the fraction of them the engine served from its
prefix cache (sum of num_cached_tokens / sum of prompt tokens; "children": the calls whose prompt
is longer than the tree's prompt, i.e. that continue a generated prefix; "all": every call), wall
time, tokens/s, trajectories/s, and tree/flat ratios: each figure the median over --reps runs.
TreeRPO trees are sampled barrier-free (a node's children start when it returns, the default
`expansion=async`); each repetition also samples them level-synchronously (`expansion=level`,
every level waits for its slowest node) and the two wall times are printed.

    python -m benchmarks.bench_rollout                                  # local engine, tiny model, CPU
    python -m benchmarks.bench_rollout --shape qwen2.5-1.5b --device cuda --dtype bfloat16
    python -m benchmarks.bench_rollout --engine vllm                    # vLLM, prefix caching on
    python -m benchmarks.bench_rollout --engine vllm --shape qwen2.5-1.5b --eos both   # on a GPU
    python -m benchmarks.bench_rollout --engine vllm     # vLLM on CPU: 4 GiB KV cache, eager (the defaults there)

Flags (a default of "engine" depends on --engine, as listed below):
  --engine local|vllm   local: treerpo.engines.local (transformers, no prefix cache); vllm:
                        treerpo.engines.vllm (vLLM's AsyncLLM, prefix caching on; the random
                        model and a tokenizer are saved to a temp dir and loaded by path)
  --method treerpo|treepo|both
  --prompts P           trees (prompts) in flight at once            local 4, vllm 8
  --prompt-len T        random tokens per prompt                     local 64, vllm 256
  --N --D --L           TreeRPO branching, depth, step tokens         4, 3, L: local 16, vllm 128
  --w --b --l --d       TreePO leaves, branching (= k0), segment tokens, max segments
                                                                      16, 2, l: local 8, vllm 128, 6
  --eos ignore|model|both   fixed-length outputs / the model's EOS / both runs (default ignore)
  --reps R              repetitions per run, medians reported (default 3)
  --shape tiny|tiny32|qwen2.5-1.5b   random-weight model shape      local tiny, vllm tiny32
                        (vLLM's CPU attention needs head_dim >= 32: tiny has 16, tiny32 32)
  --vocab V             vocabulary size of the random model (default 4096)
  --device, --dtype     local engine's device (cpu) and dtype; vLLM's dtype   local float32; vllm
                        float32 on vLLM's CPU backend (bf16 is emulated on CPUs without AVX-512
                        BF16: benchmarks/bench_cpu_dtype.py), bfloat16 elsewhere
  --max-batch B         local: largest batch; vllm: max_num_seqs (default 256)
  --eager / --no-eager  vllm: enforce_eager (no CUDA graphs / torch.compile); default: eager on vLLM's
                        CPU backend (minutes saved), vLLM's default elsewhere. On CPU the KV cache
                        is VLLM_CPU_KVCACHE_SPACE GiB, 4 unless set (treerpo/engines/vllm.py)
  --seed S              model and prompts (default 0)
Keep --L and --l multiples of vLLM's KV block size (16 on GPUs, 32 on its CPU backend, printed):
its prefix cache reuses whole blocks only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace

import torch

from treerpo.tree.options import RolloutOptions
from treerpo.sampling.sampler import sample_tree
from treerpo.sampling.segments import SegmentSource

SHAPES = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128),
    "tiny32": dict(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256),  # head_dim 32
    # Qwen2.5-1.5B's shape (random weights): 28 layers, 1536 hidden, 12 heads / 2 KV heads
    "qwen2.5-1.5b": dict(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960),
}
DEFAULTS = {  # flags whose default depends on the engine
    "local": dict(prompts=4, prompt_len=64, L=16, l=8, shape="tiny", dtype="float32"),
    "vllm": dict(prompts=8, prompt_len=256, L=128, l=128, shape="tiny32", dtype=None),  # dtype: vllm_dtype()
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


class Recorder:
    """The engine, with every call's prompt length, decoded tokens and prefix-cache hits recorded."""

    def __init__(self, engine):
        self.engine = engine
        self.calls: list[tuple[int, int, int]] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        out = await self.engine.generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)
        cached = (getattr(out, "extra_fields", None) or {}).get("num_cached_tokens") or 0
        self.calls.append((len(prompt_ids), len(out.token_ids), int(cached)))
        return out


async def run_tree(engine, prompts, opts, max_len, eos):
    params = {"temperature": 1.0, "ignore_eos": eos is None}
    src = SegmentSource(engine, params, NEVER if eos is None else eos)
    trees = await asyncio.gather(*(sample_tree(p, f"p{i}", src, opts, max_len) for i, p in enumerate(prompts)))
    return sum(len(t.leaves()) for t in trees)


async def run_flat(engine, prompts, leaves, max_len, eos):
    params = {"temperature": 1.0, "ignore_eos": eos is None, "max_tokens": max_len, "logprobs": True}
    outs = await asyncio.gather(*(engine.generate(f"p{i}", prompt_ids=p, sampling_params=params)
                                  for i, p in enumerate(prompts) for j in range(leaves)))
    return len(outs)


async def measure(engine, run, prompt_len: int) -> dict:
    rec = Recorder(engine)
    t0 = time.perf_counter()
    trajectories = await run(rec)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    tokens = sum(c[1] for c in rec.calls)
    children = [c for c in rec.calls if c[0] > prompt_len]
    sent, cached = sum(c[0] for c in rec.calls), sum(c[2] for c in rec.calls)
    child_sent, child_cached = sum(c[0] for c in children), sum(c[2] for c in children)
    return {"traj": trajectories, "tokens": tokens, "calls": len(rec.calls), "sent": sent,
            "cache_all": cached / sent if sent else 0.0,
            "cache_children": child_cached / child_sent if child_sent else float("nan"),
            "secs": secs, "tok/s": tokens / secs, "traj/s": trajectories / secs}


def median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def build_engine(args, eos_id: int, tmp: str):
    from treerpo.tiny.model import build_model, build_tokenizer

    model = build_model(args.vocab, seed=args.seed, max_positions=4096, **SHAPES[args.shape])
    if args.engine == "local":
        from treerpo.engines.local import LocalEngine

        model = model.to(device=args.device, dtype=getattr(torch, args.dtype))
        return LocalEngine(model, eos_token_ids=[eos_id], pad_token_id=0, max_batch_size=args.max_batch)
    from treerpo.engines.vllm import VLLMEngine

    model.save_pretrained(tmp)
    build_tokenizer().save_pretrained(tmp)  # byte-level, 259 ids; the model's ids above them stay valid
    del model
    return VLLMEngine.from_model(tmp, seed=args.seed, dtype=args.dtype, enforce_eager=args.eager,
                                 max_num_seqs=args.max_batch, max_model_len=4096)


def shapes(args) -> list[tuple[str, RolloutOptions, str]]:
    out = []
    if args.method in ("treerpo", "both"):
        out.append(("treerpo", RolloutOptions(method="treerpo", branching=args.N, depth=args.D, step_tokens=args.L),
                    f"N={args.N} D={args.D} L={args.L}"))
    if args.method in ("treepo", "both"):
        out.append(("treepo", RolloutOptions(method="treepo", leaves=args.w, branch=args.b, segment_tokens=args.l,
                                             max_segments=args.d, init_branches=args.b),
                    f"w={args.w} b={args.b} l={args.l} d={args.d}"))
    return out


def print_table(method, shape, opts, eos_label, tree, flat, tree_expect, flat_expect, reps):
    print(f"\n{method} ({shape}), {eos_label}: {opts.leaves_per_tree} leaves per prompt, "
          f"max length {opts.max_response_tokens}, median of {reps}")
    print(f"{'':6}{'traj':>6}{'tokens':>9}{'analytic':>10}{'dev %':>8}{'calls':>7}{'prompt tok':>12}"
          f"{'cached child':>14}{'cached all':>12}{'secs':>8}{'tok/s':>9}{'traj/s':>8}")
    for name, r, exp in (("tree", tree, tree_expect), ("flat", flat, flat_expect)):
        child = "-" if r["cache_children"] != r["cache_children"] else f"{100 * r['cache_children']:.1f}%"
        print(f"{name:6}{r['traj']:>6.0f}{r['tokens']:>9.0f}{exp:>10}{100 * (r['tokens'] - exp) / exp:>8.2f}"
              f"{r['calls']:>7.0f}{r['sent']:>12.0f}{child:>14}{100 * r['cache_all']:>11.1f}%{r['secs']:>8.2f}"
              f"{r['tok/s']:>9.0f}{r['traj/s']:>8.1f}")
    print(f"tree/flat: decoded tokens {tree['tokens'] / flat['tokens']:.3f}, prompt tokens "
          f"{tree['sent'] / flat['sent']:.3f}, wall time {tree['secs'] / flat['secs']:.3f}, "
          f"trajectories/s {tree['traj/s'] / flat['traj/s']:.2f}x, tokens/s {tree['tok/s'] / flat['tok/s']:.2f}x")


async def bench(args, engine, eos_id: int) -> None:
    g = torch.Generator().manual_seed(args.seed)

    def fresh_prompts():  # ids 3.. (0-2 are the tokenizer's specials, EOS among them)
        return [torch.randint(3, args.vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]

    eos_modes = {"ignore": [None], "model": [eos_id], "both": [None, eos_id]}[args.eos]
    await run_flat(engine, fresh_prompts()[:2], 2, 4, None)  # warm-up
    for method, opts, shape in shapes(args):
        max_len, leaves = opts.max_response_tokens, opts.leaves_per_tree
        tree_expect, flat_expect = (x * args.prompts for x in analytic(opts))
        if method == "treepo" and args.b ** args.d < args.w:
            print(f"\nnote: {args.b}^{args.d} paths < w={args.w}: TreePO's fallback adds rounds the analytic count omits")
        for eos in eos_modes:
            trees, flats, levels = [], [], []
            level_opts = replace(opts, expansion="level") if method == "treerpo" else None
            for _ in range(args.reps):
                p = fresh_prompts()
                trees.append(await measure(engine, lambda e: run_tree(e, p, opts, max_len, eos), args.prompt_len))
                p = fresh_prompts()
                flats.append(await measure(engine, lambda e: run_flat(e, p, leaves, max_len, eos), args.prompt_len))
                if level_opts is not None:
                    p = fresh_prompts()
                    levels.append(await measure(engine, lambda e: run_tree(e, p, level_opts, max_len, eos),
                                                args.prompt_len))
            label = "EOS ignored" if eos is None else f"model EOS {eos} (analytic = upper bound)"
            print_table(method, shape, opts, label, median(trees), median(flats), tree_expect, flat_expect, args.reps)
            if levels:
                lv, bf = median(levels), median(trees)
                print(f"treerpo expansion: level-synchronous {lv['secs']:.2f} s, barrier-free {bf['secs']:.2f} s "
                      f"(barrier-free/level {bf['secs'] / lv['secs']:.3f}; level tree/flat "
                      f"{lv['secs'] / median(flats)['secs']:.3f})")


async def amain(args, tmp: str) -> None:
    from treerpo.tiny.model import SPECIALS

    eos_id = SPECIALS.index("<|im_end|>")  # the tiny models' EOS (config and tokenizer)
    engine = build_engine(args, eos_id, tmp)
    try:
        where = f"vLLM (block size {engine.block_size})" if args.engine == "vllm" else f"local on {args.device}"
        print(f"model {args.shape} (vocab {args.vocab}, {args.dtype}), engine {where}, {args.prompts} prompts "
              f"of {args.prompt_len} tokens in flight, torch threads {torch.get_num_threads()}")
        if args.engine == "vllm":
            off = [f"{k}={v}" for k, v in (("L", args.L), ("l", args.l)) if v % engine.block_size]
            if off:
                print(f"note: {', '.join(off)} not a multiple of the block size {engine.block_size}")
        await bench(args, engine, eos_id)
    finally:
        if hasattr(engine, "aclose"):
            await engine.aclose()


def vllm_dtype() -> str:
    """float32 on vLLM's CPU backend, as verl_ext/config/preset/cpu.yaml; bfloat16 on accelerators."""
    from vllm.platforms import current_platform

    return "float32" if current_platform.is_cpu() else "bfloat16"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["local", "vllm"], default="local")
    ap.add_argument("--method", choices=["treerpo", "treepo", "both"], default="both")
    ap.add_argument("--prompts", type=int)
    ap.add_argument("--prompt-len", type=int)
    ap.add_argument("--N", type=int, default=4, help="treerpo branching")
    ap.add_argument("--D", type=int, default=3, help="treerpo depth")
    ap.add_argument("--L", type=int, help="treerpo step tokens")
    ap.add_argument("--w", type=int, default=16, help="treepo leaves")
    ap.add_argument("--b", type=int, default=2, help="treepo branching")
    ap.add_argument("--l", type=int, help="treepo segment tokens")
    ap.add_argument("--d", type=int, default=6, help="treepo max segments")
    ap.add_argument("--eos", choices=["ignore", "model", "both"], default="ignore")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shape", choices=sorted(SHAPES))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype")
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--eager", action=argparse.BooleanOptionalAction, default=None,
                    help="vllm: enforce_eager (default: on for vLLM's CPU backend)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for k, v in DEFAULTS[args.engine].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.dtype is None:
        args.dtype = vllm_dtype()
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_rollout_") as tmp:
        asyncio.run(amain(args, tmp))


if __name__ == "__main__":
    main()

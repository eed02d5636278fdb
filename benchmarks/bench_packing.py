"""Tree-packed vs unpacked actor forward+backward on the launch scripts' tree shapes (scaled down).

For each shape: one batch of trees laid out as verl's actor gets it (`treerpo.training.tree_batch`),
then verl's PPO policy loss forward+backward over (a) the padded rows, as verl computes them, and
(b) the packed trees (`treerpo.training.packing`), same model and weights. Reported, packed / unpacked in
the same run: actor tokens (and the analytic count), median forward+backward time over the
repetitions, for two packed attentions (sdpa with the dense tree mask, and one block per node,
`treerpo.training.tree_attention`), and memory (of the per-node one): on CPU the bytes the autograd graph saves for backward (the activations,
counted once per storage), on CUDA torch's peak allocated memory. `pack` + `segment_plan` (on CPU,
the plan's attention mask built on the device) are timed on their own.

Shapes (per tree; segment length L, prompt length P):
    treerpo_n4_d3         TreeRPO N=4 D=3: 4 -> 16 -> 64 leaves, every segment L tokens
    treerpo_n4_d3_early   the same, each non-last-level node an early-EOS leaf with p=0.3
    treepo_w16_b2         TreePO w=16 b=2: binary to 16 paths, then chains to depth 6
    treepo_w16_b2_early   the same with p=0.3 early EOS

    nice -n 19 python -m benchmarks.bench_packing [--seg 32 --prompt 32 --trees 1 --hidden 256 --layers 4]
    python -m benchmarks.bench_packing --device cuda --preset qwen2.5-1.5b --seg 384 --prompt 256 \
        --checkpointing --kernels segments flex                       (GPU, bf16: benchmarks/gpu_check.sh)

    python -m benchmarks.bench_packing --host-only --seg 384 --prompt 256 --trees 8 --reps 5
                                                                      (pack and plan alone)

`--kernels flex` adds FlexAttention with the tree's block mask (backward on accelerators only);
`--checkpointing` turns on gradient checkpointing as the GPU recipe does (both paths).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

try:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.utils.torch_functional import logprobs_from_logits
except ImportError:  # the GPU check's machine has torch and transformers only (benchmarks/gpu_check.sh)
    OmegaConf = get_policy_loss_fn = None

    def logprobs_from_logits(logits, labels):
        return torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None])[..., 0]

from treerpo.training import packing, tree_attention
from treerpo.tiny.model import build_model
from treerpo.training.tree_batch import grow_tree, verl_rows

SHAPES = {
    "treerpo_n4_d3": ([4, 4, 4], 0.0),
    "treerpo_n4_d3_early": ([4, 4, 4], 0.3),
    "treepo_w16_b2": ([2, 2, 2, 2, 1, 1], 0.0),
    "treepo_w16_b2_early": ([2, 2, 2, 2, 1, 1], 0.3),
}
PRESETS = {  # Qwen2.5-1.5B's shape (random init); the vocabulary is cut to keep logits small
    "qwen2.5-1.5b": dict(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960),
}
LOSS_CONFIG = None if OmegaConf is None else OmegaConf.create(
    {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "clip_ratio_c": 3.0, "global_batch_info": {}})


def analytic_tokens(branching: list[int], prompt: int, seg: int) -> tuple[int, int]:
    """(unpacked, packed) tokens of one full tree (no early EOS): leaves x (P + D L) vs P + nodes x L."""
    widths, w = [], 1
    for b in branching:
        w *= b
        widths.append(w)
    return widths[-1] * (prompt + len(branching) * seg), prompt + sum(widths) * seg


def counted_tokens(trees) -> tuple[int, int]:
    """(unpacked, packed) tokens counted on the Tree objects: each leaf's prompt + path, vs each
    tree's prompt + every node's segment once (any shape, early EOS included)."""
    unpacked = sum(len(t.prompt_ids) + len(t.response_ids(leaf)) for t in trees for leaf in t.leaves())
    packed = sum(len(t.prompt_ids) + sum(len(n.token_ids) for n in t.nodes) for t in trees)
    return unpacked, packed


def loss_of(log_prob, mask):
    """verl's vanilla PPO loss (token-mean) at ratio 1, advantages 1: the actor update's graph.
    Without verl: the same loss written out (at ratio 1 no clipping is active)."""
    if get_policy_loss_fn is None:
        ratio = torch.exp(log_prob - log_prob.detach())
        return -(ratio * mask).sum() / mask.sum()
    loss, _ = get_policy_loss_fn("vanilla")(log_prob.detach(), log_prob, mask, mask, "token-mean", LOSS_CONFIG)
    return loss


def forward_unpacked(model, rows, dev):
    model.set_attn_implementation("sdpa")
    p = rows.input_ids.shape[1] - rows.response_length
    logits = model(input_ids=rows.input_ids.to(dev), attention_mask=rows.attention_mask.to(dev),
                   position_ids=rows.position_ids.to(dev)).logits[:, p - 1: -1].float()
    return logprobs_from_logits(logits, rows.input_ids[:, p:].to(dev))


def forward_packed(model, rows, pk, dev, plan=None):
    """plan=None: sdpa with the dense (L, L) tree mask; else the plan's tree kernel."""
    model.set_attn_implementation("sdpa" if plan is None else tree_attention.NAME)
    extra = {"attention_mask": pk.attention.to(dev)} if plan is None else {"tree_plan": plan}
    logits = model(input_ids=pk.input_ids.to(dev), position_ids=pk.position_ids.to(dev), **extra).logits.float()
    return packing.response_logprobs(logits, pk, rows.input_ids.to(dev), with_entropy=False)[0]


def saved_bytes(fn) -> int:
    """Bytes the autograd graph of `fn()` holds for backward, each storage counted once."""
    seen: dict = {}

    def pack_hook(t):
        if t.device.type != "meta":
            seen[(t.untyped_storage().data_ptr(), t.device)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def measure(model, fn, mask, dev, reps):
    def step():
        model.zero_grad(set_to_none=True)
        loss_of(fn(), mask).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        model.zero_grad(set_to_none=True)
        torch.cuda.reset_peak_memory_stats()
        step()
        memory = torch.cuda.max_memory_allocated()
    else:
        memory = saved_bytes(lambda: loss_of(fn(), mask))
    return statistics.median(times), memory


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--seg", type=int, default=32, help="segment length L (launch scripts: 384 / 512)")
    ap.add_argument("--prompt", type=int, default=32, help="prompt length P")
    ap.add_argument("--trees", type=int, default=1, help="trees in the batch (one micro-batch)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--preset", choices=list(PRESETS), default=None)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kernels", nargs="+", default=["segments"], choices=["segments", "flex"],
                    help="tree attention kernels to time beside the dense mask (flex: backward on accelerators only)")
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on (the GPU recipe's)")
    ap.add_argument("--host-only", action="store_true",
                    help="time only the host-side pack and plan (no model), e.g. at the launch scripts' full sizes")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.host_only:
        return host_cost(args)
    dev = torch.device(args.device)
    shape = PRESETS[args.preset] if args.preset else dict(hidden=args.hidden, layers=args.layers, heads=8,
                                                          kv_heads=2, intermediate=3 * args.hidden)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = build_model(args.vocab, max_positions=8192, **shape).to(dev, dtype)
    tree_attention.register()
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    print(f"model {shape} vocab {args.vocab} {dtype} on {dev}; attention: unpacked = sdpa with the padding mask, "
          f"dense = sdpa with the (L, L) tree mask, seg = {tree_attention.NAME} (sdpa per node block); "
          f"L={args.seg} P={args.prompt} trees={args.trees} reps={args.reps} threads={args.threads} "
          f"checkpointing={args.checkpointing} kernels={args.kernels}")
    head = (f"{'shape':20s} {'rows':>4s} {'tok unp':>7s} {'tok pk':>6s} {'ratio':>5s} {'analyt':>6s} "
            f"{'t unp':>6s} {'t dense':>7s} {'t seg':>6s} {'dense/unp':>9s} {'seg/unp':>7s} "
            f"{'mem unp':>7s} {'mem seg':>7s} {'seg/unp':>7s} {'plan s':>6s}"
            + (f" {'t flex':>6s} {'flex/unp':>8s} {'mem flex':>8s}" if "flex" in args.kernels else ""))
    print(head)
    for name in args.shapes:
        branching, p_stop = SHAPES[name]
        trees, rows = shape_batch(name, args)
        t0 = time.perf_counter()
        pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
        plan = tree_attention.plan(pk, "segments", dev)
        plan.mask  # built at first use; timed here with the plan
        t_pack = time.perf_counter() - t0
        counts = packing.token_counts(rows.attention_mask, pk)
        a_unp, a_pk = counted_tokens(trees)
        if p_stop == 0:  # a full tree: the closed form must agree
            f_unp, f_pk = analytic_tokens(branching, args.prompt, args.seg)
            assert (a_unp, a_pk) == (f_unp * args.trees, f_pk * args.trees), name
        mask = rows.response_mask.float().to(dev)
        t_u, m_u = measure(model, lambda: forward_unpacked(model, rows, dev), mask, dev, args.reps)
        pk_dev = pk.to(dev)
        t_d, _ = measure(model, lambda: forward_packed(model, rows, pk_dev, dev), mask, dev, args.reps)
        t_s, m_s = measure(model, lambda: forward_packed(model, rows, pk_dev, dev, plan), mask, dev, args.reps)
        mib = 2 ** 20
        flex = ""
        if "flex" in args.kernels:
            if dev.type == "cpu":
                flex = f" {'n/a':>6s} {'n/a':>8s} {'n/a':>8s}"  # torch runs FlexAttention's backward on accelerators only
            else:
                fplan = tree_attention.plan(pk, "flex", dev)
                t_f, m_f = measure(model, lambda: forward_packed(model, rows, pk_dev, dev, fplan), mask, dev, args.reps)
                flex = f" {t_f:6.2f} {t_f / t_u:8.3f} {m_f / mib:8.0f}"
        print(f"{name:20s} {len(rows.uids):4d} {counts['unpacked']:7d} {counts['packed']:6d} {counts['ratio']:5.3f} "
              f"{a_pk / a_unp:6.3f} {t_u:6.2f} {t_d:7.2f} {t_s:6.2f} {t_d / t_u:9.3f} {t_s / t_u:7.3f} "
              f"{m_u / mib:7.0f} {m_s / mib:7.0f} {m_s / m_u:7.3f} {t_pack:6.3f}" + flex, flush=True)


def shape_batch(name: str, args):
    """--trees trees of shape `name` (seed 0) and their rows in verl's layout."""
    branching, p_stop = SHAPES[name]
    rng = random.Random(0)
    trees = [grow_tree(rng, f"prompt{i}", args.prompt, branching, args.seg, args.vocab, p_stop=p_stop)
             for i in range(args.trees)]
    return trees, verl_rows(trees)


def host_cost(args) -> None:
    """Median milliseconds of `pack` and of the segment plan (block indices, then the attention
    mask built on --device), per micro-batch of --trees trees and per tree."""
    dev = torch.device(args.device)
    print(f"host cost of packing: P={args.prompt} L={args.seg} trees={args.trees} reps={args.reps} "
          f"threads={args.threads} mask on {dev}")
    print(f"{'shape':20s} {'rows':>4s} {'packed tok':>10s} {'pack ms':>8s} {'plan ms':>8s} {'mask ms':>8s} "
          f"{'mask MB':>8s} {'total ms/tree':>13s}")
    for name in args.shapes:
        trees, rows = shape_batch(name, args)
        t = {"pack": [], "plan": [], "mask": []}
        for _ in range(args.reps + 1):
            t0 = time.perf_counter()
            pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
            t1 = time.perf_counter()
            plan = tree_attention.plan(pk, "segments", dev)
            t2 = time.perf_counter()
            mask = plan.mask
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t3 = time.perf_counter()
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2)):
                t[k].append(v * 1e3)
        med = {k: statistics.median(v[1:]) for k, v in t.items()}  # the first repetition warms up
        print(f"{name:20s} {len(rows.uids):4d} {int(pk.valid.sum()):10d} {med['pack']:8.1f} {med['plan']:8.1f} "
              f"{med['mask']:8.1f} {mask.numel() / 1e6:8.1f} {sum(med.values()) / args.trees:13.1f}", flush=True)


if __name__ == "__main__":
    main()

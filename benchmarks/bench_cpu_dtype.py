"""bf16 against float32 on this machine's CPU: why the CPU preset trains and samples in float32.

Times, in one run and on one thread (a training worker's Ray actor gets one), the median of
`--reps` repetitions of
    linear     a (tokens x hidden) @ (hidden x intermediate) matmul, the tiny model's MLP shape
    fwd+bwd    the tiny Qwen2's forward and backward over a micro-batch of rows
in float32 and in bf16 (autocast, as verl's FSDP engine computes without `mixed_precision`), and
prints bf16 / float32. It also says whether the CPU has AVX-512 BF16, which makes bf16 native.

    python -m benchmarks.bench_cpu_dtype [--tokens 3600 --rows 36 --reps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from treerpo.tiny.model import build_model


def median_seconds(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=3600, help="rows of the linear's input (default: %(default)s)")
    ap.add_argument("--rows", type=int, default=36, help="sequences in the fwd+bwd micro-batch (default: %(default)s)")
    ap.add_argument("--seq", type=int, default=100, help="tokens per sequence (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=20, help="repetitions, median reported (default: %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"AVX-512 BF16: {torch.cpu._is_avx512_bf16_supported()}, AVX-512: {torch.cpu._is_avx512_supported()}")

    x = torch.randn(args.tokens, 128)
    w = torch.randn(256, 128)
    lin32 = median_seconds(lambda: torch.nn.functional.linear(x, w), args.reps)
    xb, wb = x.bfloat16(), w.bfloat16()
    lin16 = median_seconds(lambda: torch.nn.functional.linear(xb, wb), args.reps)

    model = build_model(259, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256)
    ids = torch.randint(0, 259, (args.rows, args.seq))

    def step(dtype):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = model(input_ids=ids).logits
        logits.float().logsumexp(-1).mean().backward()

    fb32 = median_seconds(lambda: step(torch.float32), max(3, args.reps // 4))
    fb16 = median_seconds(lambda: step(torch.bfloat16), max(3, args.reps // 4))
    print("| what | float32 ms | bf16 ms | bf16 / float32 |")
    print("|---|---|---|---|")
    print(f"| linear {args.tokens}x128 @ 128x256 | {lin32 * 1e3:.1f} | {lin16 * 1e3:.1f} | {lin16 / lin32:.2f} |")
    print(f"| tiny Qwen2 fwd+bwd, {args.rows} x {args.seq} tokens | {fb32 * 1e3:.1f} | {fb16 * 1e3:.1f} | "
          f"{fb16 / fb32:.2f} |")


if __name__ == "__main__":
    main()

"""Time `treerpo` and `treepo` against verl's `grpo` on one training batch of tree rows.

Default batch (the GPU recipe's scale): 512 prompts x 16 leaves x 4096 response tokens, trees of depth 8 shaped
like TreePO's (b=2: 2 -> 4 -> 8 -> 16 paths, then 16 chains down to depth 8), 512-token segments,
each leaf's own last segment of random length (early EOS; rows right-padded to 4096), binary
rewards on the last token, rows shuffled as verl's v1 trainer hands them over.

    python -m benchmarks.bench_estimators [--prompts 512 --leaves 16 --length 4096 --depth 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import verl  # noqa: F401  loads the treerpo plugin
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from treerpo.tree import topology


def make_batch(prompts: int, leaves: int, length: int, depth: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    seg = length // depth
    uids, prompt_uids, row_ends = [], [], []
    for p in range(prompts):
        for leaf in range(leaves):
            # the binary branching of the first log2(leaves) levels, then single-child chains
            path, width = [], 1
            for d in range(depth):
                if width < leaves:
                    path.append((leaf // (leaves // (width * 2))) % 2)
                    width *= 2
                else:
                    path.append(0)
            ends = [seg * (k + 1) for k in range(depth)]
            ends[-1] = seg * (depth - 1) + int(rng.integers(1, seg + 1))  # the leaf's own segment: early EOS
            uids.append(topology.encode(f"prompt-{p:05d}", path, ends))
            prompt_uids.append(f"prompt-{p:05d}")
            row_ends.append(ends[-1])
    b = len(uids)
    ends_t = torch.tensor(row_ends)
    mask = (torch.arange(length)[None, :] < ends_t[:, None]).float()  # right-padded to `length`
    rewards = torch.zeros(b, length)
    rewards[torch.arange(b), ends_t - 1] = torch.from_numpy(rng.integers(0, 2, b)).float()
    perm = rng.permutation(b)
    return (np.array(uids, dtype=object)[perm], np.array(prompt_uids, dtype=object)[perm],
            rewards[perm], mask[perm])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--leaves", type=int, default=16)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    uids, prompt_uids, rewards, mask = make_batch(args.prompts, args.leaves, args.length, args.depth)
    print(f"batch: {len(uids)} rows x {args.length} tokens, depth {args.depth}, torch threads {torch.get_num_threads()}")
    config = {"tree": {"advantage": {}}}
    runs = {
        "grpo": lambda: get_adv_estimator_fn("grpo")(rewards.clone(), mask, index=prompt_uids),
        "treerpo": lambda: get_adv_estimator_fn("treerpo")(rewards, mask, index=uids, config=config),
        "treepo": lambda: get_adv_estimator_fn("treepo")(rewards, mask, index=uids, config=config),
    }
    secs = {name: timed(fn, args.repeats) for name, fn in runs.items()}
    print(f"{'estimator':<10}{'median s':>10}{'x grpo':>9}")
    for name, s in secs.items():
        print(f"{name:<10}{s:>10.3f}{s / secs['grpo']:>9.2f}")


if __name__ == "__main__":
    main()

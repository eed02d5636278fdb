"""TreePO's divergence policies: how a step's path budget is split over the active paths.

`total` new paths (total >= A) go to the A active paths, each at least 1 (ALGORITHMS.md 2.3, 2.5):

    fixed_avg:  total // A each, the remainder to one path drawn by the seeded rng
    logprob:    1 each, plus the extra (total - A) split by weights softmax(s * score / T), with
                s = -1 (`prefer=low`: favour low-probability paths) or +1 (`prefer=high`);
                integer shares by largest remainder (ties to the earlier path)
"""

from __future__ import annotations

import math
import random
from typing import Optional, Sequence

from treerpo.tree.tree import Node


def path_score(node: Node, how: str) -> float:
    """Sampled-token logprob score of the path ending at `node`."""
    if how == "last_segment":
        lps = node.logprobs
    else:
        lps = [lp for n in node.lineage() for lp in (n.logprobs or [])]
        if any(n.logprobs is None for n in node.lineage()):
            lps = None
    if not lps:
        raise ValueError("the logprob divergence policy needs the engine's sampled-token logprobs")
    return sum(lps) if how == "sum" else sum(lps) / len(lps)


def split_budget(
    total: int,
    n_paths: int,
    policy: str,
    rng: random.Random,
    scores: Optional[Sequence[float]] = None,
    temperature: float = 2.0,
    prefer: str = "low",
) -> list[int]:
    if n_paths < 1 or total < n_paths:
        raise ValueError(f"cannot split {total} paths over {n_paths} active paths (need total >= paths >= 1)")
    if policy == "fixed_avg":
        counts = [total // n_paths] * n_paths
        counts[rng.randrange(n_paths)] += total - sum(counts)
        return counts
    if policy != "logprob":
        raise ValueError(f"unknown divergence policy {policy!r}")
    if scores is None or len(scores) != n_paths:
        raise ValueError("logprob divergence needs one score per active path")
    sign = -1.0 if prefer == "low" else 1.0
    z = [sign * s / temperature for s in scores]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    weights = [v / sum(e) for v in e]
    extra = total - n_paths
    raw = [extra * wgt for wgt in weights]
    counts = [1 + math.floor(r) for r in raw]
    left = total - sum(counts)
    order = sorted(range(n_paths), key=lambda i: (-(raw[i] - math.floor(raw[i])), i))
    for i in order[:left]:
        counts[i] += 1
    return counts

"""Per-step tree metrics of the `tree_sync` trainer mode: shape, stop reasons, token economy,
prefix-cache use, groups without signal.

`tree_stats(tree)` summarises one tree (the agent loop computes it where the tree is sampled and
carries it with the tree's rows); `aggregate(stats)` turns a step's trees into verl metrics under
`tree/` (verl_ext/trainer.py); `zero_variance_group_fraction` reads the batch's node table with
the TreeRPO estimator's own group function.

    tree/generated_tokens       tokens the engine decoded for the trees
    tree/flat_tokens            tokens a flat rollout of the same leaves at the same lengths
                                would decode (sum of the leaves' response lengths)
    tree/flat_over_tree_tokens  their ratio (docs/ALGORITHMS.md section 3: 1536/584 = 2.63 for a full
                                N=8, D=3 tree)
    tree/cached_prompt_frac     prompt tokens the engine reported as prefix-cache hits
                                (vLLM's num_cached_tokens) over all prompt tokens sent
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import torch

from treerpo.advantages.step import step_level_groups
from treerpo.tree.node_table import NodeTable
from treerpo.tree.tree import StopReason, Tree


def tree_stats(tree: Tree) -> dict:
    nodes = [n for n in tree.nodes if n.parent is not None]
    leaves = tree.leaves()
    prompt_tokens = sum(len(tree.prompt_ids) + n.start for n in nodes)  # each call's prefix
    return {
        "nodes": len(nodes),
        "leaves": len(leaves),
        "mean_depth": sum(l.depth for l in leaves) / max(len(leaves), 1),
        "max_depth": max((l.depth for l in leaves), default=0),
        "stops": dict(Counter(l.stop_reason.value for l in leaves if l.stop_reason is not None)),
        "generated_tokens": sum(len(n.token_ids) for n in nodes),
        "flat_tokens": sum(l.end for l in leaves),
        "prompt_tokens": prompt_tokens,
        "cached_prompt_tokens": sum(n.num_cached_tokens for n in nodes),
    }


def aggregate(stats: Iterable[dict]) -> dict[str, float]:
    stats = list(stats)
    if not stats:
        return {}
    n = len(stats)
    gen = sum(s["generated_tokens"] for s in stats)
    flat = sum(s["flat_tokens"] for s in stats)
    prompt = sum(s["prompt_tokens"] for s in stats)
    out = {
        "tree/trees": float(n),
        "tree/nodes": float(sum(s["nodes"] for s in stats)),
        "tree/leaves_per_tree": sum(s["leaves"] for s in stats) / n,
        "tree/mean_depth": sum(s["mean_depth"] * s["leaves"] for s in stats) / max(sum(s["leaves"] for s in stats), 1),
        "tree/max_depth": float(max(s["max_depth"] for s in stats)),
        "tree/generated_tokens": float(gen),
        "tree/flat_tokens": float(flat),
        "tree/flat_over_tree_tokens": flat / gen if gen else 0.0,
        "tree/cached_prompt_frac": sum(s["cached_prompt_tokens"] for s in stats) / prompt if prompt else 0.0,
    }
    for reason in StopReason:
        out[f"tree/stop/{reason.value}"] = float(sum(s["stops"].get(reason.value, 0) for s in stats))
    return out


def zero_variance_group_fraction(table: NodeTable, leaf_rewards: torch.Tensor, value_rule: str) -> float:
    """Fraction of step-level groups (siblings of one parent, >= 2 of them) whose values all agree."""
    groups = step_level_groups(table, table.values(leaf_rewards, value_rule), tau=0.0)
    if not groups.real.any():
        return 0.0
    return float(groups.zero_variance[groups.real].double().mean())

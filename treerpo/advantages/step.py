"""TreeRPO: step-level group-relative advantages (arXiv 2506.05183; docs/ALGORITHMS.md section 1).

For every tree in the batch, with node values V (`NodeTable.values`, treerpo/tree/node_table.py):

    step-level group   G(p) = children(p): the siblings that continue the same parent p
    A(c)  = V(c) - mean_{s in G(p)} V(s)
    std_G = sqrt( sum_{s in G(p)} (V(s) - mean)^2 / (|G(p)| - 1) )   (unbiased, as verl's GRPO)
    kept:   |G(p)| >= 2  and  std_G >= tau       (a group of one compares nothing; tau=0 keeps
                                                  every group of two or more)
    A(c) = 0 for every c in a group that is not kept
    group:  A(c) /= std_G + eps
    mean:   A(c) unchanged                       (Dr. GRPO)
    batch:  A(c) /= std(A over the kept nodes of the batch) + eps   (unbiased, one value per node)

Every token of node c's own segment gets A(c); tokens with response_mask 0 get 0. With depth 1
(every leaf a child of the root, at least two per prompt) and `group` normalisation this is
verl's `grpo` exactly. A batch without real rows gives zeros.
"""

from __future__ import annotations

import torch

from dataclasses import dataclass

from treerpo.tree.node_table import NodeTable
from treerpo.tree.options import AdvantageOptions

ZERO_VARIANCE_ATOL = 1e-12  # sibling values within this of each other count as equal


@dataclass
class StepGroups:
    """The step-level groups of a table, one entry per node p for the group G(p) = children(p)
    (nodes without children: size 0). All (N,) tensors."""

    size: torch.Tensor  # |G(p)|, float64
    mean: torch.Tensor  # mean V over G(p)
    std: torch.Tensor  # unbiased std of V over G(p) (0 when |G(p)| < 2)
    kept: torch.Tensor  # bool: |G(p)| >= 2 and std >= tau
    zero_variance: torch.Tensor  # bool: |G(p)| >= 2 and every V in G(p) equal

    @property
    def real(self) -> torch.Tensor:
        """bool: groups that compare something (>= 2 siblings)."""
        return self.size >= 2


def step_level_groups(table: NodeTable, v: torch.Tensor, tau: float) -> StepGroups:
    """Size, mean, std, kept and zero-variance of every step-level group, from node values `v`."""
    n = table.num_nodes
    child = (table.parent >= 0).nonzero(as_tuple=True)[0]
    par = table.parent[child]
    size = table.num_children.to(torch.float64)
    mean = torch.zeros(n, dtype=torch.float64).index_add_(0, par, v[child]) / size.clamp(min=1)
    dev = v[child] - mean[par]
    sq = torch.zeros(n, dtype=torch.float64).index_add_(0, par, dev * dev)
    std = torch.where(size > 1, (sq / (size - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    lo = torch.full((n,), float("inf"), dtype=torch.float64).scatter_reduce(0, par, v[child], "amin")
    hi = torch.full((n,), float("-inf"), dtype=torch.float64).scatter_reduce(0, par, v[child], "amax")
    real = size >= 2
    return StepGroups(size=size, mean=mean, std=std, kept=real & (std >= tau),
                      zero_variance=real & ((hi - lo).abs() <= ZERO_VARIANCE_ATOL))


def step_level_advantages(
    table: NodeTable, leaf_rewards: torch.Tensor, opts: AdvantageOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A(node) for every node (roots get 0), plus V(node) and a per-node `pruned` flag.

    `pruned` marks the non-root nodes whose group is not kept: a single child, or siblings whose
    values have std below tau. They get A = 0 and stay out of the `batch` std.
    """
    v = table.values(leaf_rewards, opts.value_rule)
    n = table.num_nodes
    child = (table.parent >= 0).nonzero(as_tuple=True)[0]
    par = table.parent[child]
    groups = step_level_groups(table, v, opts.tau)
    dev = v[child] - groups.mean[par]
    keep = groups.kept[par]
    adv = dev
    if opts.norm == "group":
        adv = dev / (groups.std[par] + opts.epsilon)
    elif opts.norm == "batch":
        kept = dev[keep]
        if kept.numel() >= 2:
            adv = dev / (kept.std() + opts.epsilon)  # torch.std: unbiased
    adv = torch.where(keep, adv, torch.zeros_like(adv))

    node_adv = torch.zeros(n, dtype=torch.float64)
    node_adv[child] = adv
    pruned = torch.zeros(n, dtype=torch.bool)
    pruned[child] = ~keep
    return node_adv, v, pruned


def treerpo_token_advantages(
    table: NodeTable,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    opts: AdvantageOptions,
) -> torch.Tensor:
    """(B, T) advantages: each token gets the step-level advantage of its segment's node."""
    leaf_rewards = token_level_rewards.sum(dim=-1)
    node_adv, _, _ = step_level_advantages(table, leaf_rewards, opts)
    tokens = table.scatter_to_tokens(node_adv.to(token_level_rewards.dtype), response_mask.shape[1])
    return tokens * response_mask

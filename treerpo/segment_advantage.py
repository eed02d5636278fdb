"""TreePO: tree-based segment-level advantages (arXiv 2508.17445; ALGORITHMS.md section 2).

For leaf i with reward R_i, its groups are the root group (all leaves of its prompt) and every
ancestor node whose subtree holds at least 2 leaves (each node counts, so a chain of single-child
nodes above a branch contributes one group per node, as path-prefix grouping does):

    A_ij = R_i - mean_{k in G_j} R_k                       (no per-group std)
    average:     A_i = mean_j A_ij                           (the paper's best, default)
    group_size:  A_i = sum_j |G_j| A_ij / sum_j |G_j|
    option:      leave out subgroups (never the root group) whose rewards all agree

Every response token of row i then gets A_i, whitened over the batch's tokens, as REINFORCE++
does: `verl_ext.estimators` applies verl's own `masked_whiten`. With every leaf a child of the
root, only the root group remains and the result is verl's `reinforce_plus_plus_baseline`.
"""

from __future__ import annotations

import torch

from treerpo.node_table import NodeTable
from treerpo.options import AdvantageOptions


def treepo_row_advantages(table: NodeTable, leaf_rewards: torch.Tensor, opts: AdvantageOptions) -> torch.Tensor:
    """A_i for every row (0 for padding rows), float64, before batch whitening."""
    count, total, total_sq = table.leaf_stats(leaf_rewards)
    mean = total / count.clamp(min=1)
    var = total_sq / count.clamp(min=1) - mean * mean

    # the row's groups: its root (column 0) and its path nodes above the leaf (columns 1..depth-1)
    b, d_max = table.row_nodes.shape
    cols = torch.cat([table.row_root[:, None], table.row_nodes], dim=1)  # (B, 1 + Dmax)
    level = torch.arange(d_max + 1)[None, :]
    above_leaf = level < table.row_depth[:, None]  # root ... parent of the leaf
    safe = cols.clamp(min=0)
    size = torch.where(above_leaf, count[safe], torch.zeros((), dtype=torch.float64))
    member = above_leaf & (size >= 2)
    member[:, 0] = table.real  # the root group always counts, whatever its size
    if opts.drop_zero_variance_subgroups:
        zero_var = var[safe] <= 1e-12 * (1 + mean[safe].abs())
        member[:, 1:] &= ~zero_var[:, 1:]

    r = leaf_rewards.to(torch.float64)[:, None]
    a = torch.where(member, r - mean[safe], torch.zeros((), dtype=torch.float64))
    w = member.to(torch.float64)
    if opts.aggregation == "group_size":
        w = w * size.clamp(min=1)
    return (a * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-12)

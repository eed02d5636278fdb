"""TreePO: tree-based segment-level advantages (arXiv 2508.17445; docs/ALGORITHMS.md section 2).

For leaf i with reward R_i, its groups are the root group (all leaves of its prompt) and every
ancestor node whose subtree holds at least 2 leaves (each node counts, so a chain of single-child
nodes above a branch contributes one group per node, as path-prefix grouping does):

    A_ij = R_i - mean_{k in G_j} R_k                       (no per-group std)
    average:     A_i = mean_j A_ij                           (the paper's best, default)
    group_size:  A_i = sum_j |G_j| A_ij / sum_j |G_j|
    option:      leave out subgroups (never the root group) whose rewards all agree

Which value a token gets depends on how shared segments are trained (`tree.rollout.credit`):

    every_row:  every response token of row i gets A_i (TreePO's own rows)
    once:       a token of node n's segment gets  A(n) = mean_{i in leaves(n)} A_i,
                the mean over the leaves below n (a leaf's own segment: A(n) = A_i)

Under `every_row` a segment shared by the leaves L(n) is trained |L(n)| times with advantages
A_i: summed, |L(n)| * A(n). Under `once` it is one sample, so it gets that sum's per-sample value
A(n), whichever leaf row happens to hold its trained copy (giving it that row's A_i would make a
shared segment's signal depend on leaf order).

The token values are then whitened over the batch's trained tokens (token-weighted mean, unbiased
std), as REINFORCE++ does: `verl_ext.estimators` applies verl's own `masked_whiten`. With every
leaf a child of the root, only the root group remains, nothing is shared, and the result is
verl's `reinforce_plus_plus_baseline` under either credit. A batch without real rows gives zeros.
"""

from __future__ import annotations

import torch

from dataclasses import dataclass

from treerpo.tree.node_table import NodeTable
from treerpo.tree.options import AdvantageOptions


@dataclass
class SegmentGroups:
    """TreePO's groups G_j of a table, one entry per node: the leaves below it. All (N,) tensors."""

    size: torch.Tensor  # |G_j|: leaves below the node, float64
    mean: torch.Tensor  # mean R over them
    zero_variance: torch.Tensor  # bool: their rewards all agree
    is_group: torch.Tensor  # bool: a root, or a node above the leaves with >= 2 leaves below


def segment_groups(table: NodeTable, leaf_rewards: torch.Tensor) -> SegmentGroups:
    """Every node's group: size, mean reward, whether the rewards agree, whether it counts."""
    count, total, total_sq = table.leaf_stats(leaf_rewards)
    mean = total / count.clamp(min=1)
    var = total_sq / count.clamp(min=1) - mean * mean  # population variance: only "zero or not" matters
    zero_var = var <= 1e-12 * (1 + mean.abs())
    is_group = (table.parent < 0) | ((table.num_children > 0) & (count >= 2))
    return SegmentGroups(size=count, mean=mean, zero_variance=zero_var, is_group=is_group)


def treepo_row_advantages(table: NodeTable, leaf_rewards: torch.Tensor, opts: AdvantageOptions) -> torch.Tensor:
    """A_i for every row (0 for padding rows), float64, before batch whitening."""
    if table.num_nodes == 0:  # no real rows
        return torch.zeros(leaf_rewards.shape[0], dtype=torch.float64)
    groups = segment_groups(table, leaf_rewards)
    count, mean = groups.size, groups.mean

    # the row's groups: its root (column 0) and its path nodes above the leaf (columns 1..depth-1)
    b, d_max = table.row_nodes.shape
    cols = torch.cat([table.row_root[:, None], table.row_nodes], dim=1)  # (B, 1 + Dmax)
    level = torch.arange(d_max + 1)[None, :]
    above_leaf = level < table.row_depth[:, None]  # root ... parent of the leaf
    safe = cols.clamp(min=0)
    size = torch.where(above_leaf, count[safe], torch.zeros((), dtype=torch.float64))
    member = above_leaf & groups.is_group[safe]
    member[:, 0] = table.real  # the root group always counts, whatever its size (not padding rows)
    if opts.drop_zero_variance_subgroups:
        member[:, 1:] &= ~groups.zero_variance[safe][:, 1:]

    r = leaf_rewards.to(torch.float64)[:, None]
    a = torch.where(member, r - mean[safe], torch.zeros((), dtype=torch.float64))
    w = member.to(torch.float64)
    if opts.aggregation == "group_size":
        w = w * size.clamp(min=1)
    return (a * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-12)


def treepo_node_advantages(table: NodeTable, row_adv: torch.Tensor) -> torch.Tensor:
    """A(n) = mean_{i in leaves(n)} A_i for every node n (float64; a leaf node: its row's A_i).

    The value `credit=once` gives the tokens of n's segment, from the rows' A_i
    (`treepo_row_advantages`); roots get the mean over their whole tree.
    """
    count, total, _ = table.leaf_stats(row_adv)
    return total / count.clamp(min=1)

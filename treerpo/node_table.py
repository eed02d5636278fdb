"""The trees of a training batch, rebuilt from the rows' uids as flat tensors.

A batch holds one row per leaf, in any order, possibly with verl's padding rows. This module
parses every row's topology (`treerpo.topology`) once and numbers every distinct node of every
tree, roots included, so that the estimators can work with index arithmetic in torch:

    parent[n]        parent node of node n (-1 for roots)
    depth[n]         0 for roots, 1 for first segments, ...
    row_nodes[r, j]  node of row r's path at depth j+1 (-1 past the row's depth)
    row_ends[r, j]   end offset of that node's segment in row r's response (0 past the depth)
    row_root[r]      root of row r's tree;  leaf[r] = row_nodes[r, depth_r - 1]

Node values V(node) (both rules of `treerpo.tree`) are computed here too, vectorised: the only
Python loop is the parse, one iteration per row and tree level; tokens are never looped over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from treerpo import topology
from treerpo.tree import VALUE_RULES


@dataclass
class NodeTable:
    uids: list
    real: torch.Tensor  # (B,) bool: False for padding rows
    parent: torch.Tensor  # (N,) long
    depth: torch.Tensor  # (N,) long
    num_children: torch.Tensor  # (N,) long
    row_nodes: torch.Tensor  # (B, Dmax) long
    row_ends: torch.Tensor  # (B, Dmax) long
    row_depth: torch.Tensor  # (B,) long, 0 for padding rows
    row_root: torch.Tensor  # (B,) long, -1 for padding rows
    leaf: torch.Tensor  # (B,) long, -1 for padding rows

    @property
    def num_nodes(self) -> int:
        return int(self.parent.numel())

    @property
    def max_depth(self) -> int:
        return int(self.row_nodes.shape[1])

    # ---------------------------------------------------------------------------------------
    def leaf_stats(self, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per node: (number of leaves below, sum of their rewards, sum of squared rewards)."""
        rows = self.real.nonzero(as_tuple=True)[0]
        cols = torch.cat([self.row_root[rows, None], self.row_nodes[rows]], dim=1)  # (R, 1+Dmax)
        r = rewards[rows, None].to(torch.float64).expand_as(cols)
        valid = cols >= 0
        idx, r = cols[valid], r[valid]
        n = self.num_nodes
        count = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, torch.ones_like(r))
        total = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, r)
        total_sq = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, r * r)
        return count, total, total_sq

    def values(self, rewards: torch.Tensor, rule: str = "recursive_mean") -> torch.Tensor:
        """V(node) for every node (float64), from the leaf rewards of the rows."""
        if rule not in VALUE_RULES:
            raise ValueError(f"unknown value rule {rule!r}; expected one of {VALUE_RULES}")
        if rule == "leaf_mean":
            count, total, _ = self.leaf_stats(rewards)
            return total / count.clamp(min=1)
        # recursive_mean, bottom-up one depth level at a time
        value = torch.zeros(self.num_nodes, dtype=torch.float64)
        rows = self.real.nonzero(as_tuple=True)[0]
        value[self.leaf[rows]] = rewards[rows].to(torch.float64)
        internal = self.num_children > 0
        denom = self.num_children.clamp(min=1).to(torch.float64)
        non_root = (self.parent >= 0).nonzero(as_tuple=True)[0]
        for d in range(int(self.depth.max()), 0, -1):
            children = non_root[self.depth[non_root] == d]
            acc = torch.zeros_like(value).index_add_(0, self.parent[children], value[children])
            at_parent_level = internal & (self.depth == d - 1)
            value = torch.where(at_parent_level, acc / denom, value)
        return value

    def scatter_to_tokens(self, node_values: torch.Tensor, response_length: int) -> torch.Tensor:
        """(B, T) tensor where token t of row r holds node_values of the node whose segment has t.

        Tokens past a row's last segment get 0. Segment j of row r covers
        [row_ends[r, j-1], row_ends[r, j]); a token's segment index is the number of segment ends
        at or before it, found with a cumulative sum over boundary markers (no token loop).
        """
        b = self.row_nodes.shape[0]
        per_row = torch.zeros(b, self.max_depth + 1, dtype=node_values.dtype)
        safe_nodes = self.row_nodes.clamp(min=0)
        per_row[:, : self.max_depth] = torch.where(self.row_nodes >= 0, node_values[safe_nodes], 0)
        markers = torch.zeros(b, response_length + 1, dtype=torch.int32)
        ends = torch.where(self.row_nodes >= 0, self.row_ends, response_length).clamp(max=response_length)
        markers.scatter_add_(1, ends, torch.ones_like(ends, dtype=torch.int32))
        # past a row's last segment the index is row_depth, a column that holds 0
        seg = markers[:, :response_length].cumsum(dim=1, dtype=torch.int32)
        return torch.gather(per_row, 1, seg.long())


def build(uids: Sequence, response_mask: torch.Tensor) -> NodeTable:
    """Parse every row's uid and number the nodes of all trees in the batch.

    Raises ValueError (naming the uid) when a row's topology is unreadable or contradicts another
    row's: the same leaf twice, a leaf that another row passes through, a shared segment with two
    different ends, segments that end past the response, or mask-1 tokens after the last segment.
    """
    uids = list(uids.tolist() if isinstance(uids, np.ndarray) else uids)
    b, t = response_mask.shape
    if len(uids) != b:
        raise ValueError(f"{len(uids)} uids for {b} rows")
    mask_any = (response_mask != 0).any(dim=1).tolist()

    node_ids: dict[tuple, int] = {}
    parent: list[int] = []
    depth: list[int] = []
    node_end: list[int] = []
    node_owner: list[str] = []
    real = [False] * b
    row_paths: list[list[int]] = [[] for _ in range(b)]
    row_ends: list[tuple[int, ...]] = [()] * b
    row_root = [-1] * b
    leaf_owner: dict[int, str] = {}

    for r, uid in enumerate(uids):
        if topology.is_padding_uid(uid):
            if mask_any[r]:
                raise ValueError(f"padding row {uid!r} has a non-zero response_mask")
            continue
        topo = topology.decode(uid)
        if topo.ends[-1] > t:
            raise ValueError(
                f"uid {uid!r}: its segments end at {topo.ends[-1]} but the response has only {t} tokens"
            )
        real[r] = True
        root_key = (topo.prompt_uid,)
        root = node_ids.get(root_key)
        if root is None:
            root = node_ids[root_key] = len(parent)
            parent.append(-1), depth.append(0), node_end.append(0), node_owner.append(uid)
        row_root[r] = root
        prev = root
        nodes = []
        for k in range(1, topo.depth + 1):
            key = (topo.prompt_uid, topo.path[:k])
            n = node_ids.get(key)
            if n is None:
                n = node_ids[key] = len(parent)
                parent.append(prev), depth.append(k), node_end.append(topo.ends[k - 1]), node_owner.append(uid)
            elif node_end[n] != topo.ends[k - 1]:
                raise ValueError(
                    f"uids {node_owner[n]!r} and {uid!r} share the segment at path {topo.path[:k]} "
                    f"but disagree on where it ends ({node_end[n]} vs {topo.ends[k - 1]})"
                )
            nodes.append(n)
            prev = n
        if prev in leaf_owner:
            raise ValueError(f"uids {leaf_owner[prev]!r} and {uid!r} are the same leaf")
        leaf_owner[prev] = uid
        row_paths[r] = nodes
        row_ends[r] = topo.ends

    n_nodes = len(parent)
    parent_t = torch.tensor(parent, dtype=torch.long)
    num_children = torch.zeros(n_nodes, dtype=torch.long)
    if n_nodes:
        has_parent = parent_t >= 0
        num_children.index_add_(0, parent_t[has_parent], torch.ones(int(has_parent.sum()), dtype=torch.long))
    leaves = torch.tensor([p[-1] if p else -1 for p in row_paths], dtype=torch.long)
    internal_leaf = [r for r in range(b) if real[r] and num_children[leaves[r]] > 0]
    if internal_leaf:
        uid = uids[internal_leaf[0]]
        raise ValueError(f"uid {uid!r} ends at a node that other rows of its tree continue: a leaf cannot have children")

    d_max = max((len(p) for p in row_paths), default=0)
    width = max(d_max, 1)
    row_nodes = torch.tensor([p + [-1] * (width - len(p)) for p in row_paths], dtype=torch.long).view(b, width)
    row_ends_t = torch.tensor([list(e) + [0] * (width - len(e)) for e in row_ends], dtype=torch.long).view(b, width)
    row_depth = torch.tensor([len(p) for p in row_paths], dtype=torch.long)

    # mask-1 tokens past a row's last segment belong to no node
    last_end = row_ends_t.max(dim=1).values
    positions = torch.arange(t)
    stray = ((response_mask != 0) & (positions[None, :] >= last_end[:, None])).any(dim=1)
    real_t = torch.tensor(real, dtype=torch.bool)
    stray &= real_t
    if stray.any():
        r = int(stray.nonzero()[0, 0])
        raise ValueError(
            f"uid {uids[r]!r}: response_mask has tokens after its last segment (which ends at {int(last_end[r])})"
        )

    return NodeTable(
        uids=uids,
        real=real_t,
        parent=parent_t,
        depth=torch.tensor(depth, dtype=torch.long),
        num_children=num_children,
        row_nodes=row_nodes,
        row_ends=row_ends_t,
        row_depth=row_depth,
        row_root=torch.tensor(row_root, dtype=torch.long),
        leaf=leaves,
    )

"""The trees of a batch as flat tensors: the one structure every estimator and metric reads.

Two ways in:
    build(uids, response_mask)  a training batch (one row per leaf, any order, possibly verl's
                                padding rows): every row's topology (`treerpo.tree.topology`) is
                                parsed once and every distinct node of every tree numbered
    from_tree(tree)             one sampled `Tree` directly (no uid strings parsed): the tree
                                dump and the viewer use it; table node i is `tree.nodes[i]`

Either way every node of every tree, roots included, gets an index, so that the estimators can
work with index arithmetic in torch:

    parent[n]        parent node of node n (-1 for roots)
    depth[n]         0 for roots, 1 for first segments, ...
    row_nodes[r, j]  node of row r's path at depth j+1 (-1 past the row's depth)
    row_ends[r, j]   end offset of that node's segment in row r's response (0 past the depth)
    row_root[r]      root of row r's tree;  leaf[r] = row_nodes[r, depth_r - 1]

Node values V(node) are defined here and nowhere else (`NodeTable.values`; TreeRPO,
docs/ALGORITHMS.md section 1):

    V(leaf) = r(leaf)                                          (verifier reward of the full path)
    recursive_mean:  V(v) = mean_{c in children(v)} V(c)        (the paper's rule, default)
    leaf_mean:       V(v) = mean_{l in leaves(v)}  r(l)         (the open alternative)

The two rules differ only when early EOS makes a tree unbalanced. Everything is vectorised: the
only Python loop is the parse, one iteration per row and tree level; tokens are never looped over.

A batch without real rows (no rows at all, or only verl's padding rows) gives a table with no
nodes; every method below then returns zeros of the right shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from treerpo.tree import topology
from treerpo.tree.options import VALUE_RULES


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
        """V(node) for every node (float64), from the leaf rewards of the rows (module docstring)."""
        if rule not in VALUE_RULES:
            raise ValueError(f"unknown value rule {rule!r}; expected one of {VALUE_RULES}")
        if rule == "leaf_mean":
            count, total, _ = self.leaf_stats(rewards)
            return total / count.clamp(min=1)
        # recursive_mean, bottom-up one depth level at a time
        value = torch.zeros(self.num_nodes, dtype=torch.float64)
        if self.num_nodes == 0:
            return value
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

        Row r is laid out as its segments' values, each repeated over the segment's length, then
        zeros up to T: one `repeat_interleave` over the whole batch, no token loop.
        """
        b, d = self.row_nodes.shape
        vals = torch.zeros(b, d + 1, dtype=node_values.dtype)
        # a trailing 0 that index -1 (no node: past a row's depth, padding rows) reads
        vals[:, :d] = torch.cat([node_values, node_values.new_zeros(1)])[self.row_nodes]
        ends = torch.cat([torch.zeros(b, 1, dtype=torch.long), self.row_ends], dim=1)
        ends = torch.cummax(ends, dim=1).values  # columns past the depth hold 0: carry the last end
        lengths = torch.cat([ends[:, 1:] - ends[:, :-1], response_length - ends[:, -1:]], dim=1)
        return torch.repeat_interleave(vals.reshape(-1), lengths.reshape(-1)).view(b, response_length)

    def segment_tokens(self, response_mask: torch.Tensor) -> torch.Tensor:
        """(B, Dmax) float64: the mask-1 tokens of each row's j-th segment (0 past its depth).

        With c(e) the row's mask count over tokens [0, e), segment j holds c(end_j) - c(end_{j-1})
        tokens: one cumsum over the batch, no token loop (float32: exact up to 2^24 tokens a row).
        """
        b, d = self.row_nodes.shape
        if response_mask.shape[1] == 0:
            return torch.zeros(b, d, dtype=torch.float64)
        cum = torch.cumsum(response_mask.to(torch.float32), dim=1)
        ends = torch.cat([torch.zeros(b, 1, dtype=torch.long), self.row_ends], dim=1)
        c = torch.where(ends > 0, cum.gather(1, (ends - 1).clamp(min=0)), 0).to(torch.float64)
        counts = c[:, 1:] - c[:, :-1]
        return torch.where(self.row_nodes >= 0, counts, torch.zeros((), dtype=torch.float64))

    def node_tokens(self, response_mask: torch.Tensor) -> torch.Tensor:
        """(N,) float64: the mask-1 tokens of every node's segment, summed over the rows holding it."""
        seg = self.segment_tokens(response_mask)
        valid = self.row_nodes >= 0
        return torch.zeros(self.num_nodes, dtype=torch.float64).index_add_(0, self.row_nodes[valid], seg[valid])


def build(uids: Sequence, response_mask: torch.Tensor) -> NodeTable:
    """Parse every row's uid and number the nodes of all trees in the batch.

    Nodes are found level by level: at depth k, rows with the same prompt and the same first k
    path entries share a node (np.unique over those keys). Raises ValueError (naming the uid) when
    a response_mask value is neither 0 nor 1, or a row's topology is unreadable or contradicts
    another row's: the same leaf twice (two trees under one prompt uid), a leaf that
    another row passes through, a shared segment with two different ends, segments that end past
    the response, or mask-1 tokens after the last segment.
    """
    uids = list(uids.tolist() if isinstance(uids, np.ndarray) else uids)
    b, t = response_mask.shape
    if len(uids) != b:
        raise ValueError(f"{len(uids)} uids for {int(b)} rows")
    not_binary = ((response_mask != 0) & (response_mask != 1)).any(dim=1).nonzero()
    if not_binary.numel():
        r = int(not_binary[0])
        bad = response_mask[r][(response_mask[r] != 0) & (response_mask[r] != 1)][0].item()
        raise ValueError(f"uid {uids[r]!r}: response_mask holds {bad!r}; a mask is 0 or 1 (it would scale the "
                         "row's advantages)")
    topo = topology.decode_batch(uids)
    real = ~topo.padding
    pad_rows = topo.padding.nonzero()[0]
    if pad_rows.size:
        live = (response_mask[torch.from_numpy(pad_rows)] != 0).any(dim=1).numpy()
        if live.any():
            raise ValueError(f"padding row {uids[pad_rows[live.nonzero()[0][0]]]!r} has a non-zero response_mask")
    too_long = (topo.ends.max(axis=1) > t).nonzero()[0]
    if too_long.size:
        r = int(too_long[0])
        raise ValueError(f"uid {uids[r]!r}: its segments end at {int(topo.ends[r].max())} "
                         f"but the response has only {int(t)} tokens")

    # roots: one per prompt uid
    prompt_index: dict[str, int] = {}
    pid = np.full(b, -1, dtype=np.int64)
    for r in real.nonzero()[0]:
        pid[r] = prompt_index.setdefault(topo.prompt_uids[r], len(prompt_index))
    n_roots = len(prompt_index)
    parent = [np.full(n_roots, -1, dtype=np.int64)]
    depth = [np.zeros(n_roots, dtype=np.int64)]
    width = topo.paths.shape[1]
    row_nodes = np.full((b, width), -1, dtype=np.int64)
    above = pid.copy()  # each row's node at the previous level (its root at level 0)
    next_id = n_roots
    for k in range(1, width + 1):
        rows = (real & (topo.depth >= k)).nonzero()[0]
        if rows.size == 0:
            break
        keys = np.concatenate([pid[rows, None], topo.paths[rows, :k]], axis=1)
        _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        ends_k = topo.ends[rows, k - 1]
        clash = (ends_k != ends_k[first][inv]).nonzero()[0]
        if clash.size:
            r, owner = rows[clash[0]], rows[first[inv[clash[0]]]]
            raise ValueError(
                f"uids {uids[owner]!r} and {uids[r]!r} share the segment at path "
                f"{tuple(topo.paths[r, :k].tolist())} but disagree on where it ends "
                f"({int(topo.ends[owner, k - 1])} vs {int(topo.ends[r, k - 1])})"
            )
        row_nodes[rows, k - 1] = next_id + inv
        parent.append(above[rows][first])
        depth.append(np.full(first.size, k, dtype=np.int64))
        above[rows] = next_id + inv
        next_id += first.size

    parent_a = np.concatenate(parent)
    num_children = np.bincount(parent_a[parent_a >= 0], minlength=next_id)
    leaf = np.where(real, row_nodes[np.arange(b), np.maximum(topo.depth - 1, 0)], -1)
    real_rows = real.nonzero()[0]
    continued = real_rows[num_children[leaf[real_rows]] > 0]
    if continued.size:
        raise ValueError(
            f"uid {uids[continued[0]]!r} ends at a node that other rows of its tree continue: "
            "a leaf cannot have children"
        )
    leaf_ids, first_row, counts = np.unique(leaf[real], return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = leaf_ids[counts > 1][0]
        r1, r2 = real_rows[leaf[real] == dup][:2]
        raise ValueError(f"prompt uid {topo.prompt_uids[r1]!r} has two rows for the leaf at path "
                         f"{tuple(topo.paths[r1, :topo.depth[r1]].tolist())} (uids {uids[r1]!r} and {uids[r2]!r}): two "
                         "trees under one prompt uid, or a row repeated")

    # mask-1 tokens past a row's last segment belong to no node; only columns from the smallest
    # last end on can hold them, so only those are read
    last_end = torch.from_numpy(topo.ends.max(axis=1))
    first = int(last_end[torch.from_numpy(real)].min()) if real.any() else t
    tail = response_mask[:, first:] != 0
    stray = (tail & (torch.arange(first, t)[None, :] >= last_end[:, None])).any(dim=1).numpy() & real
    if stray.any():
        r = int(stray.nonzero()[0][0])
        raise ValueError(
            f"uid {uids[r]!r}: response_mask has tokens after its last segment (which ends at {int(last_end[r])})"
        )

    return NodeTable(
        uids=uids,
        real=torch.from_numpy(real),
        parent=torch.from_numpy(parent_a),
        depth=torch.from_numpy(np.concatenate(depth)),
        num_children=torch.from_numpy(num_children),
        row_nodes=torch.from_numpy(row_nodes),
        row_ends=torch.from_numpy(topo.ends),
        row_depth=torch.from_numpy(topo.depth),
        row_root=torch.from_numpy(pid),
        leaf=torch.from_numpy(leaf),
    )


def from_tree(tree) -> NodeTable:
    """The table of one sampled tree (`treerpo.tree.tree.Tree`), built from its nodes directly.

    Table node i is `tree.nodes[i]` (the root is 0); row r is the r-th leaf of `tree.leaves()`,
    the order `treerpo.sampling.rows.leaf_rows` gives the training rows. `uids` holds each row's
    topology uid (encoded, never parsed), so messages name rows as `build` does.
    """
    index = {id(n): i for i, n in enumerate(tree.nodes)}
    leaves = tree.leaves()
    b = len(leaves)
    width = max((leaf.depth for leaf in leaves), default=0) or 1
    parent = torch.tensor([index[id(x.parent)] if x.parent is not None else -1 for x in tree.nodes], dtype=torch.long)
    depth = torch.tensor([x.depth for x in tree.nodes], dtype=torch.long)
    num_children = torch.tensor([len(x.children) for x in tree.nodes], dtype=torch.long)
    row_nodes = torch.full((b, width), -1, dtype=torch.long)
    row_ends = torch.zeros((b, width), dtype=torch.long)
    for r, leaf in enumerate(leaves):
        for j, node in enumerate(leaf.lineage()):
            row_nodes[r, j] = index[id(node)]
            row_ends[r, j] = node.end
    row_depth = torch.tensor([leaf.depth for leaf in leaves], dtype=torch.long)
    return NodeTable(
        uids=[topology.leaf_uid(tree, leaf, check=False) for leaf in leaves],
        real=torch.ones(b, dtype=torch.bool),
        parent=parent,
        depth=depth,
        num_children=num_children,
        row_nodes=row_nodes,
        row_ends=row_ends,
        row_depth=row_depth,
        row_root=torch.zeros(b, dtype=torch.long),  # the root is node 0
        leaf=torch.tensor([index[id(leaf)] for leaf in leaves], dtype=torch.long),
    )


def leaf_rewards(tree) -> torch.Tensor:
    """(B,) float64: the rewards of `tree.leaves()`, in the rows' order of `from_tree`."""
    return torch.tensor([float(leaf.reward) for leaf in tree.leaves()], dtype=torch.float64)

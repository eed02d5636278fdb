"""Tree-aware micro-batches: whole trees (or subtrees) per micro-batch, a budget in packed tokens.

Packing saves only within one micro-batch, and verl's dynamic batching (`rearrange_micro_batches`,
verl/utils/seqlen_balancing.py:348) both splits trees and counts every row's tokens, so a tree of
64 rows x 1,152 tokens looks like 73,728 tokens to it where packed it holds 32,256. Here the unit
of micro-batching is a tree, and its cost is what its packed sequence holds:

    packed(tree)   = P + sum over the tree's distinct segments of their lengths
    packed(piece)  = P + the segments on the piece's paths (its ancestors counted once)

`units` makes one unit per tree that fits `max_tokens`; a tree that does not is split at subtree
boundaries: a node whose subtree (with its ancestors) fits is one piece, else its children are
split in turn, and sibling pieces are merged back while they fit. Each piece carries the prompt
and its ancestors' tokens, computed once per piece (the cost of splitting, `Unit.repeated`:
sum of the pieces' tokens = the tree's + their repeated tokens - the prompt once). A single
root-to-leaf path over the budget is an error, as a row over verl's budget is.

`partition(units, k)` spreads units over k micro-batches, the largest first onto the least loaded
(the longest-processing-time rule), and `plan` takes the smallest k >= k_min whose micro-batches
all fit. `ranks(units, dp)` does the same over data-parallel ranks, whole units per rank, balanced
in packed tokens (what verl's `balance_batch` does for rows). Padding rows (verl's "pad..." rows,
not packed) are units of cost 0 that fill in where rows are few.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from treerpo.tree import topology


@dataclass
class Unit:
    rows: list[int]  # batch rows of this unit: a tree, a piece of one, or a padding row
    tokens: int  # packed tokens it computes
    tree: object = None  # its prompt uid (None: a padding row)
    repeated: int = 0  # a piece of a split tree: the prompt and ancestor tokens it computes again
    paths: list = field(default_factory=list)  # the node paths it covers (pieces of split trees)


def _tree_nodes(topo: topology.BatchTopology, rows: list[int]) -> tuple[dict, dict]:
    """node path -> segment length, and node path -> rows under it, for one tree's rows."""
    length: dict = {}
    under: dict = {}
    for r in rows:
        start = 0
        for k in range(int(topo.depth[r])):
            key = tuple(int(x) for x in topo.paths[r, : k + 1])
            end = int(topo.ends[r, k])
            length[key] = end - start
            under.setdefault(key, []).append(r)
            start = end
    return length, under


def _split(key: tuple, above: int, length: dict, under: dict, children: dict, max_tokens: int, uid) -> list[Unit]:
    """Pieces of the subtree at `key` (`above` = its ancestors' tokens, the prompt included)."""
    subtree = [k for k in length if k[: len(key)] == key]
    cost = above + sum(length[k] for k in subtree)
    if cost <= max_tokens:
        return [Unit(sorted(under[key]), cost, uid, paths=[key])]
    kids = children.get(key, [])
    if not kids:
        raise ValueError(f"a path of tree {uid!r} holds {cost} packed tokens, over the micro-batch budget of "
                         f"{max_tokens}: raise it (ppo_max_token_len_per_gpu / log_prob_max_token_len_per_gpu)")
    shared = above + length[key]
    pieces = [p for c in kids for p in _split(c, shared, length, under, children, max_tokens, uid)]
    return _merge(pieces, shared, max_tokens)


def _merge(pieces: list[Unit], shared: int, max_tokens: int) -> list[Unit]:
    """Merge consecutive sibling pieces that share `shared` tokens of ancestors while they fit."""
    out: list[Unit] = []
    for p in pieces:
        if out and out[-1].tokens + p.tokens - shared <= max_tokens:
            last = out[-1]
            out[-1] = Unit(sorted(last.rows + p.rows), last.tokens + p.tokens - shared, p.tree, paths=last.paths + p.paths)
        else:
            out.append(p)
    return out


def units(uids: Sequence, prompt_lengths: Sequence[int], max_tokens: int) -> list[Unit]:
    """One unit per tree that fits `max_tokens` packed tokens, subtree pieces of the others, and
    one unit per padding row; rows of a tree in any order (see the module docstring)."""
    uids = list(uids)
    topo = topology.decode_batch(uids)
    trees: dict = {}
    for r, prompt in enumerate(topo.prompt_uids):
        if not topo.padding[r]:
            trees.setdefault(prompt, []).append(r)
    out: list[Unit] = []
    for uid, rows in trees.items():
        p = int(prompt_lengths[rows[0]])
        length, under = _tree_nodes(topo, rows)
        total = p + sum(length.values())
        if total <= max_tokens:
            out.append(Unit(sorted(rows), total, uid))
            continue
        children: dict = {}
        for key in sorted(length):
            children.setdefault(key[:-1], []).append(key)
        pieces = [q for top in children[()] for q in _split(top, p, length, under, children, max_tokens, uid)]
        pieces = _merge(pieces, p, max_tokens)
        for q in pieces:
            q.repeated = q.tokens - sum(length[k] for k in length if any(k[: len(c)] == c for c in q.paths))
        out.extend(pieces)
    out.extend(Unit([int(r)], 0, None) for r in np.flatnonzero(topo.padding))
    return out


def partition(items: list[Unit], k: int) -> list[list[int]]:
    """Indices of `items` in k groups: the largest first, each onto the group with the fewest
    packed tokens (then the fewest rows, so that padding rows spread out)."""
    groups: list[list[int]] = [[] for _ in range(k)]
    load = [(0, 0)] * k
    for i in sorted(range(len(items)), key=lambda i: (-items[i].tokens, i)):
        g = min(range(k), key=lambda j: (load[j], j))
        groups[g].append(i)
        load[g] = (load[g][0] + items[i].tokens, load[g][1] + len(items[i].rows))
    return groups


def lower_bound(items: list[Unit], max_tokens: int) -> int:
    """The fewest micro-batches that can hold these units: ceil(total packed tokens / budget)."""
    total = sum(u.tokens for u in items)
    return max(1, -(-total // max_tokens))


def fits(items: list[Unit], groups: list[list[int]], max_tokens: int) -> bool:
    return all(sum(items[i].tokens for i in g) <= max_tokens for g in groups)


def plan(items: list[Unit], max_tokens: int, k_min: int = 1) -> list[list[int]]:
    """Micro-batches as lists of batch rows: the fewest (>= k_min) whose packed tokens all fit."""
    real = [u for u in items if u.tree is not None]
    k = max(k_min, lower_bound(items, max_tokens))
    while True:
        groups = partition(items, k)
        if fits(items, groups, max_tokens) or k >= max(len(real), 1):
            return [sorted(r for i in g for r in items[i].rows) for g in groups if g]
        k += 1


def ranks(items: list[Unit], dp: int) -> list[list[int]]:
    """Batch rows per data-parallel rank: whole units, balanced in packed tokens."""
    return [sorted(r for i in g for r in items[i].rows) for g in partition(items, dp)]


def rank_layout(groups: Sequence[tuple[object, Sequence[int], int]], dp: int, multiple: int) -> tuple[list, int]:
    """Rows per data-parallel rank for a step's batch, whole trees per rank.

    `groups` are (tree, its rows, its tokens); verl hands each rank an equal, contiguous share of
    the batch, a multiple of `multiple` rows (`total_multiple / dp`). Trees go to ranks by the
    longest-processing-time rule on tokens; each rank is then filled with padding slots (None) to
    the same row count. Returns (per rank: its rows, then None per padding slot; padding slots)."""
    items = [Unit(list(rows), int(tokens), tree) for tree, rows, tokens in groups]
    per_rank = [[r for i in g for r in items[i].rows] for g in partition(items, dp)]
    size = max((len(r) for r in per_rank), default=0)
    size = -(-max(size, 1) // multiple) * multiple
    layout = [rows + [None] * (size - len(rows)) for rows in per_rank]
    return layout, sum(size - len(rows) for rows in per_rank)

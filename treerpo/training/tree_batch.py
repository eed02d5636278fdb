"""Random trees of a given shape, laid out as verl's actor sees them (tests and benchmarks of packing).

A tree here is grown with `treerpo.tree.tree.Tree` and turned into rows with
`treerpo.sampling.rows.leaf_rows`, the same code the tree agent loop uses, so uids, segment
ends and credit masks are the production ones. Token ids are random; a segment is cut short
(an early EOS leaf) where the shape asks for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from treerpo.sampling.rows import leaf_rows
from treerpo.tree.tree import StopReason, Tree


@dataclass
class VerlRows:
    input_ids: torch.Tensor  # (B, P + R): prompt left-padded, response right-padded
    attention_mask: torch.Tensor  # (B, P + R)
    position_ids: torch.Tensor  # (B, P + R), cumsum(attention_mask) - 1, as verl computes it
    response_mask: torch.Tensor  # (B, R) the credit mask of `leaf_rows`
    uids: list[str]
    response_length: int


def grow_tree(rng: random.Random, prompt_uid: str, prompt_len: int, branching: list[int], seg_len: int,
              vocab: int, p_stop: float = 0.0, min_seg: int = 1) -> Tree:
    """A tree whose level k nodes have `branching[k]` children (TreeRPO N=4 D=3: [4, 4, 4]).

    With probability `p_stop` a node below the last level stops early: its segment is cut to a
    random length in [min_seg, seg_len] and it gets no children (an early-EOS leaf).
    """
    tree = Tree([rng.randrange(3, vocab) for _ in range(prompt_len)], prompt_uid)

    def grow(parent, level):
        for _ in range(branching[level]):
            last = level == len(branching) - 1
            stop = last or rng.random() < p_stop
            n = rng.randint(min_seg, seg_len) if stop and not last else seg_len
            node = tree.add_child(parent, [rng.randrange(3, vocab) for _ in range(n)],
                                  stop_reason=StopReason.EOS if stop else None)
            if not stop:
                grow(node, level + 1)

    grow(tree.root, 0)
    return tree


def verl_rows(trees: list[Tree], credit: str = "every_row", pad_rows: int = 0,
              prompt_width: int | None = None, response_length: int | None = None) -> VerlRows:
    """verl's padded (B, P + R) layout for the leaf rows of `trees`, plus `pad_rows` padding rows
    (uid "pad...", a copy of row 0's tokens, response mask 0, as verl's padding_utils adds them)."""
    rows = [(t, r) for t in trees for r in leaf_rows(t, credit)]
    p = prompt_width or max(len(t.prompt_ids) for t in trees)
    r_len = response_length or max(len(r.response_ids) for _, r in rows)
    b = len(rows) + pad_rows
    ids = torch.zeros(b, p + r_len, dtype=torch.long)
    mask = torch.zeros(b, p + r_len, dtype=torch.long)
    resp_mask = torch.zeros(b, r_len, dtype=torch.long)
    uids = []
    for i, (tree, row) in enumerate(rows):
        pl, rl = len(tree.prompt_ids), len(row.response_ids)
        ids[i, p - pl: p] = torch.tensor(tree.prompt_ids)
        ids[i, p: p + rl] = torch.tensor(row.response_ids)
        mask[i, p - pl: p + rl] = 1
        resp_mask[i, :rl] = torch.tensor(row.response_mask)
        uids.append(row.uid)
    for i in range(len(rows), b):
        ids[i], mask[i] = ids[0], mask[0]
        uids.append(f"pad{i:032x}")
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return VerlRows(ids, mask, position_ids, resp_mask, uids, r_len)

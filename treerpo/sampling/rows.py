"""From a sampled tree to training rows: one row per leaf, its response the full path.

Segment credit (`tree.rollout.credit`, ALGORITHMS.md section 1):
    every_row  a shared segment is trained in every row that contains it
    once       a segment is trained in exactly one row, its first leaf in depth-first order, and
               has response_mask 0 in every other row that repeats it
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from treerpo.tree import topology
from treerpo.tree.tree import Node, Tree


@dataclass
class LeafRow:
    uid: str  # the leaf's topology, `treerpo.tree.topology` format
    leaf: Node
    response_ids: list[int]
    response_logprobs: Optional[list[float]]
    response_mask: list[int]


def leaf_rows(tree: Tree, credit: str = "every_row") -> list[LeafRow]:
    if credit not in ("every_row", "once"):
        raise ValueError(f"unknown credit {credit!r}")
    rows = []
    credited: set[int] = set()
    for leaf in tree.leaves():
        mask: list[int] = []
        for node in leaf.lineage():
            train = credit == "every_row" or node.node_id not in credited
            credited.add(node.node_id)
            mask.extend([1 if train else 0] * len(node.token_ids))
        rows.append(
            LeafRow(
                uid=topology.leaf_uid(tree, leaf),
                leaf=leaf,
                response_ids=tree.response_ids(leaf),
                response_logprobs=tree.response_logprobs(leaf),
                response_mask=mask,
            )
        )
    return rows

"""Trees and batches for the tests, built by hand or at random."""

from __future__ import annotations

import random

import numpy as np
import torch

from treerpo.tree import topology
from treerpo.tree.tree import StopReason, Tree


def build_tree(prompt_uid: str, spec, rewards: dict | None = None) -> Tree:
    """Tree from a nested spec: each node is (segment_length, [children]) or (length, reward) for a leaf."""
    tree = Tree(prompt_ids=[1, 2, 3], prompt_uid=prompt_uid)
    counter = [100]

    def add(parent, node_spec):
        length, rest = node_spec
        toks = list(range(counter[0], counter[0] + length))
        counter[0] += length
        if isinstance(rest, list):
            n = tree.add_child(parent, toks)
            for c in rest:
                add(n, c)
        else:
            n = tree.add_child(parent, toks, stop_reason=StopReason.EOS)
            n.reward = float(rest)

    for c in spec:
        add(tree.root, c)
    return tree


def random_tree(rng: random.Random, prompt_uid: str, max_depth: int = 4, max_branch: int = 3,
                max_seg: int = 4, reward_kind: str = "binary") -> Tree:
    tree = Tree(prompt_ids=[1], prompt_uid=prompt_uid)

    def grow(parent, depth):
        for _ in range(rng.randint(1, max_branch)):
            n = tree.add_child(parent, [7] * rng.randint(1, max_seg))
            if depth < max_depth and rng.random() < 0.6:
                grow(n, depth + 1)
            else:
                n.stop_reason = StopReason.EOS
                n.reward = float(rng.randint(0, 1)) if reward_kind == "binary" else rng.uniform(-2, 2)

    grow(tree.root, 1)
    return tree


def rows_from_trees(trees, response_length: int | None = None, once: bool = False):
    """(uids, token_level_rewards, response_mask) with one row per leaf, reward on the last token.

    once=True masks every internal segment in all but the first leaf row that holds it.
    """
    rows = [(t, l) for t in trees for l in t.leaves()]
    T = response_length or max(l.end for _, l in rows)
    b = len(rows)
    uids = np.array([topology.leaf_uid(t, l) for t, l in rows], dtype=object)
    rewards = torch.zeros(b, T)
    mask = torch.zeros(b, T)
    seen = set()
    for i, (t, l) in enumerate(rows):
        mask[i, : l.end] = 1
        rewards[i, l.end - 1] = l.reward
        if once:
            for n in l.lineage():
                if id(n) in seen:
                    mask[i, n.start : n.end] = 0
                seen.add(id(n))
    return uids, rewards, mask

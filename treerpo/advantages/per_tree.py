"""The advantages of one sampled tree on its own, before anything batch-wide: what the tree dump
records (`tree.rollout.dump_path`) and `treerpo view` shows.

    treerpo  step-level A(node) (treerpo/advantages/step.py) with `group` or `mean`
             normalisation; under `batch` the unscaled deviation V(c) - mean(V(siblings)),
             since the batch's std is not the tree's. Nodes also get `pruned`: their
             step-level group is not kept (a single child, or sibling std below tau).
    treepo   A_i of every leaf before the batch whitening (treerpo/advantages/segment.py);
             nodes above the leaves get none (the viewer shows the mean A_i below them).

The table is built from the tree directly (`node_table.from_tree`), with the estimators' own
functions, so the dump holds exactly what the estimator computed for this tree.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Callable, Optional

from treerpo.advantages.segment import treepo_row_advantages
from treerpo.advantages.step import step_level_advantages
from treerpo.tree import node_table, record
from treerpo.tree.options import AdvantageOptions
from treerpo.tree.tree import Tree


def tree_advantages(tree: Tree, method: str, opts: AdvantageOptions) -> tuple[list, list]:
    """(advantage, pruned) per node of `tree.nodes` (None where the method gives none)."""
    n = len(tree.nodes)
    adv: list = [None] * n
    pruned: list = [None] * n
    table = node_table.from_tree(tree)
    rewards = node_table.leaf_rewards(tree)
    if method == "treerpo":
        local = replace(opts, norm="mean") if opts.norm == "batch" else opts
        a, _, p = step_level_advantages(table, rewards, local)
        for i in range(1, n):
            adv[i], pruned[i] = float(a[i]), bool(p[i])
    else:
        a = treepo_row_advantages(table, rewards, opts)
        for r, leaf in enumerate(table.leaf.tolist()):
            adv[leaf] = float(a[r])
    return adv, pruned


def tree_record(tree: Tree, decode: Callable[[list[int]], str], method: str,
                opts: Optional[AdvantageOptions] = None, step: Optional[int] = None) -> dict:
    """The dump record of `tree` (treerpo/tree/record.py) with V(node) and the tree's own
    advantages, when every leaf has its reward; without rewards, the segments only."""
    opts = opts or AdvantageOptions()
    adv = pruned = None
    if all(leaf.reward is not None for leaf in tree.leaves()):
        tree.compute_values(opts.value_rule)
        adv, pruned = tree_advantages(tree, method, opts)
    return record.to_record(tree, decode, method, asdict(opts), step, adv, pruned)

"""Optional JSONL dump of sampled trees, for inspection (`tree.rollout.dump_path`).

One line per tree: the prompt (text and token ids) and, per node, its path, depth, parent, text,
token ids and their sampled log-probs, the policy version that generated it (verl's global step),
stop reason, reward (leaves), value V(node) and advantage. The advantage written is the tree's
own, before anything batch-wide: TreeRPO's step-level A(node) with `group`/`mean` normalisation
(the unscaled deviation under `batch`); TreePO's per-leaf A_i before whitening. TreeRPO nodes also
carry `pruned` (their step-level group is not kept: a single child or sibling std below tau), and
the record carries the `advantage_options` used, so a reader (`treerpo view`) need not guess them.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import torch

from treerpo.advantages import node_table
from treerpo.advantages.segment import treepo_row_advantages
from treerpo.advantages.step import step_level_advantages
from treerpo.sampling.options import AdvantageOptions
from treerpo.sampling.rows import leaf_rows
from treerpo.sampling.tree import Tree


def tree_record(tree: Tree, decode: Callable[[list[int]], str], method: str,
                opts: Optional[AdvantageOptions] = None, step: Optional[int] = None) -> dict:
    opts = opts or AdvantageOptions()
    leaves = tree.leaves()
    have_rewards = all(l.reward is not None for l in leaves)
    node_adv: dict[int, float] = {}
    node_pruned: dict[int, bool] = {}
    if have_rewards:
        tree.compute_values(opts.value_rule)
        rows = leaf_rows(tree)
        length = max(l.end for l in leaves)
        mask = (torch.arange(length)[None, :] < torch.tensor([r.leaf.end for r in rows])[:, None]).float()
        table = node_table.build([r.uid for r in rows], mask)
        rewards = torch.tensor([float(l.reward) for l in leaves], dtype=torch.float64)
        if method == "treerpo":
            local = AdvantageOptions(**{**opts.__dict__, "norm": "mean" if opts.norm == "batch" else opts.norm})
            adv, _, pruned = step_level_advantages(table, rewards, local)
            for r, row in enumerate(rows):  # map table nodes back to tree nodes along each path
                for j, node in enumerate(row.leaf.lineage()):
                    node_adv[node.node_id] = float(adv[table.row_nodes[r, j]])
                    node_pruned[node.node_id] = bool(pruned[table.row_nodes[r, j]])
        else:
            a = treepo_row_advantages(table, rewards, opts)
            for r, row in enumerate(rows):
                node_adv[row.leaf.node_id] = float(a[r])
    return {
        "step": step,
        "prompt_uid": tree.prompt_uid,
        "method": method,
        "prompt": decode(tree.prompt_ids),
        "prompt_tokens": len(tree.prompt_ids),
        "prompt_ids": list(tree.prompt_ids),
        "advantage_options": dict(opts.__dict__),
        "nodes": [
            {
                "id": n.node_id,
                "parent": n.parent.node_id if n.parent is not None else None,
                "path": list(n.path()),
                "depth": n.depth,
                "text": decode(n.token_ids),
                "tokens": len(n.token_ids),
                "token_ids": list(n.token_ids),
                "logprobs": list(n.logprobs) if n.logprobs is not None else None,
                "global_steps": list(n.global_steps) if n.global_steps is not None else None,
                "stop": n.stop_reason.value if n.stop_reason is not None else None,
                "reward": n.reward,
                "value": n.value,
                "advantage": node_adv.get(n.node_id),
                "pruned": node_pruned.get(n.node_id),
            }
            for n in tree.nodes
            if n.parent is not None
        ],
    }


def append_jsonl(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")

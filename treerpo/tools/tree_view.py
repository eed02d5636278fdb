"""What `treerpo view` shows of a tree dump (`tree.rollout.dump_path`): one view record per tree.

The dump (treerpo/tree/record.py) holds each node's text, tokens, stop reason, V(node) and the
tree's own advantage. The viewer rebuilds the tree from the record, its node table
(`node_table.from_tree`), and asks the estimators' own functions where credit landed:

    TreeRPO  a node's step-level group is its siblings (`step_level_groups`,
             treerpo/advantages/step.py). A group is `single` (one child: compares nothing),
             `zero-variance` (all sibling values equal), `pruned` (sibling std below the
             dump's tau) or `kept`.
    TreePO   a leaf's groups are the root and every node above it with at least 2 leaves below
             (`segment_groups`, treerpo/advantages/segment.py); a group whose leaf rewards all
             agree is `zero-variance`. The dump holds A_i for leaves only; a node above them
             gets `adv_below`, the mean A_i of its leaves (`treepo_node_advantages`): what
             `credit=once` trains its segment with, the per-row mean under `every_row`.

Leaves also get the answer the verifier extracts (the last \\boxed{} of the path's text,
treerpo.reward.verifier.last_boxed). Per tree a summary: leaves, depth, generated tokens vs the
tokens a flat rollout of the same leaves would decode, accuracy (leaves with reward > 0).
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Iterable, Iterator, Optional

import torch

from treerpo.advantages.segment import segment_groups, treepo_node_advantages
from treerpo.advantages.step import step_level_groups
from treerpo.reward.verifier import last_boxed
from treerpo.tree import node_table, record
from treerpo.tree.options import AdvantageOptions


def read_dump(path: str, step: Optional[int] = None, prompt: Optional[str] = None) -> Iterator[dict]:
    """The dump's records, optionally only one step and/or prompt (uid, or a prefix of it)."""
    return record.read_records(path, step, prompt)


def question(prompt: str) -> str:
    """The prompt without chat-template markers (`<|im_start|>user`, ...), on one line: the list label."""
    text = re.sub(r"<\|[^|]*\|>(?:user|assistant|system)?", " ", prompt)
    return " ".join(text.split())


def _num(x) -> Optional[float]:
    return None if x is None else float(x)


def _options(rec: dict) -> AdvantageOptions:
    """The dump's advantage options (the defaults for a dump that has none)."""
    known = {f.name for f in fields(AdvantageOptions)}
    return AdvantageOptions(**{k: v for k, v in (rec.get("advantage_options") or {}).items() if k in known})


def view_tree(rec: dict, index: int = 0) -> dict:
    """One dump record as the viewer draws it (token ids and log-probs left out)."""
    tree, by_id = record.from_record(rec)
    table = node_table.from_tree(tree)
    pos = {id(n): i for i, n in enumerate(tree.nodes)}
    rid = {id(n): k for k, n in by_id.items()}
    root = rid[id(tree.root)]
    raw = {n["id"]: n for n in rec["nodes"]}
    order = []  # depth-first, children in their order: the order the page draws them in
    stack = list(reversed(tree.root.children))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node.children))
    leaves = tree.leaves()
    rewards = None if any(l.reward is None for l in leaves) else node_table.leaf_rewards(tree)
    method = rec.get("method", "treerpo")
    opts = _options(rec)

    groups: dict[int, dict] = {}
    if method == "treerpo":
        values = [n.value for n in tree.nodes[1:]]
        v = None
        if all(x is not None for x in values) and values:
            v = torch.tensor([0.0] + [float(x) for x in values], dtype=torch.float64)
        elif rewards is not None:
            v = table.values(rewards, opts.value_rule)
        g = step_level_groups(table, v, opts.tau) if v is not None else None
        for parent in [tree.root] + order:
            if not parent.children:
                continue
            i, size = pos[id(parent)], len(parent.children)
            if size < 2:
                state = "single"
            elif g is None:
                state = "no reward"
            elif bool(g.zero_variance[i]):
                state = "zero-variance"
            else:
                state = "kept" if bool(g.kept[i]) else "pruned"
            groups[rid[id(parent)]] = {"size": size, "std": float(g.std[i]) if g is not None else 0.0, "state": state}
    else:
        sg = segment_groups(table, rewards if rewards is not None else torch.zeros(len(leaves), dtype=torch.float64))
        for node in [tree.root] + order:
            i = pos[id(node)]
            if bool(sg.is_group[i]):
                known = rewards is not None
                groups[rid[id(node)]] = {"size": int(sg.size[i]), "mean": float(sg.mean[i]) if known else None,
                                         "state": "zero-variance" if known and bool(sg.zero_variance[i]) else "kept"}

    leaf_set = {id(l) for l in leaves}
    adv_below = None
    if method == "treepo":
        row_adv = [raw[rid[id(l)]].get("advantage") for l in leaves]
        if leaves and all(a is not None for a in row_adv):
            adv_below = treepo_node_advantages(table, torch.tensor(row_adv, dtype=torch.float64))

    nodes = []
    for node in order:
        nid = rid[id(node)]
        n = raw[nid]
        parent = rid[id(node.parent)]
        out = {"id": nid, "parent": parent if parent != root else None, "depth": n.get("depth"),
               "text": n.get("text") or "", "tokens": n.get("tokens"), "stop": n.get("stop"),
               "value": _num(n.get("value")), "adv": _num(n.get("advantage"))}
        if method == "treerpo":
            out["group"] = parent
        else:
            above = [rid[id(a)] for a in node.lineage()[:-1]]
            out["groups"] = [root] + [a for a in above if a in groups] if id(node) in leaf_set else None
            out["subgroup"] = nid in groups
            if id(node) not in leaf_set:
                out["adv_below"] = float(adv_below[pos[id(node)]]) if adv_below is not None else None
        if id(node) in leaf_set:
            out["reward"] = _num(n.get("reward"))
            out["answer"] = last_boxed("".join(raw[rid[id(a)]].get("text") or "" for a in node.lineage()))
        nodes.append(out)

    leaf_nodes = [n for n in nodes if "reward" in n]
    known_rewards = [n["reward"] for n in leaf_nodes if n["reward"] is not None]
    summary = {
        "leaves": len(leaf_nodes),
        "depth": max((l.depth for l in leaves), default=0),
        "tokens": sum(len(n.token_ids) for n in tree.nodes),
        "flat_tokens": sum(l.end for l in leaves),
        "accuracy": sum(r > 0 for r in known_rewards) / len(known_rewards) if known_rewards else None,
        "groups": len(groups),
        "zero_variance_groups": sum(g["state"] == "zero-variance" for g in groups.values()),
        "pruned_groups": sum(g["state"] in ("pruned", "single", "zero-variance") for g in groups.values())
        if method == "treerpo" else None,
    }
    prompt = rec.get("prompt", "")
    return {"index": index, "step": rec.get("step"), "uid": rec.get("prompt_uid"), "method": method,
            "prompt": prompt, "question": question(prompt), "options": rec.get("advantage_options"), "root": root,
            "groups": {str(k): v for k, v in groups.items()}, "nodes": nodes, "summary": summary}


def view_trees(records: Iterable[dict]) -> list[dict]:
    return [view_tree(rec, i) for i, rec in enumerate(records)]


def advantage_scale(trees: list[dict]) -> float:
    """The colour scale's end: the largest |advantage| in the dump (1.0 when there is none)."""
    m = max((abs(n["adv"]) for t in trees for n in t["nodes"] if n["adv"] is not None), default=0.0)
    return m if m > 0 else 1.0


def write_view(dump: str, out: str, step: Optional[int] = None, prompt: Optional[str] = None) -> int:
    """Write the HTML viewer of `dump` (only `step` / `prompt` if given) to `out`; returns the tree count."""
    import os

    from treerpo.tools.tree_view_page import page

    trees = view_trees(read_dump(dump, step, prompt))
    if not trees:
        raise ValueError(f"{dump}: no tree" + (" matches the filter" if step is not None or prompt else ""))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(page(trees, advantage_scale(trees), f"trees of {os.path.basename(dump)}"))
    return len(trees)

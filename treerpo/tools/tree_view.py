"""What `treerpo view` shows of a tree dump (`tree.rollout.dump_path`): one view record per tree.

The dump (treerpo.tools.tree_dump) holds each node's text, tokens, stop reason, V(node) and the
tree's own advantage. This module adds what a reader needs to see where credit landed, derived
from the dump alone, with the estimators' own rules:

    TreeRPO  a node's step-level group is its siblings (the children of its parent,
             treerpo.advantages.step). A group is `single` (one child: compares nothing),
             `zero-variance` (all sibling values equal) or `pruned` (sibling std below tau);
             the dump's `pruned` flag decides where it has one, else a group whose values
             differ but whose advantages are all 0 was pruned.
    TreePO   a leaf's groups are the root (all leaves) and every node above it whose subtree
             holds at least 2 leaves (treerpo.advantages.segment); a subgroup whose leaf
             rewards all agree is `zero-variance`. The dump holds A_i for leaves only; a node
             above them gets `adv_below`, the mean A_i of its leaves: what `credit=once`
             trains its segment with (treepo_node_advantages), the per-row mean under
             `every_row`.

Leaves also get the answer the verifier extracts (the last \\boxed{} of the path's text,
treerpo.reward.verifier.last_boxed). Per tree a summary: leaves, depth, generated tokens vs the
tokens a flat rollout of the same leaves would decode, accuracy (leaves with reward > 0).
"""

from __future__ import annotations

import json
import math
import re
from typing import Iterable, Iterator, Optional

from treerpo.reward.verifier import last_boxed


def read_dump(path: str, step: Optional[int] = None, prompt: Optional[str] = None) -> Iterator[dict]:
    """The dump's records, optionally only one step and/or prompt (uid, or a prefix of it)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if step is not None and rec.get("step") != step:
                continue
            if prompt is not None and not str(rec.get("prompt_uid", "")).startswith(prompt):
                continue
            yield rec


def _std(xs: list[float]) -> float:
    """Unbiased std (the one the TreeRPO estimator compares with tau); 0 for fewer than 2."""
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def question(prompt: str) -> str:
    """The prompt without chat-template markers (`<|im_start|>user`, ...), on one line: the list label."""
    text = re.sub(r"<\|[^|]*\|>(?:user|assistant|system)?", " ", prompt)
    return " ".join(text.split())


def _num(x) -> Optional[float]:
    return None if x is None else float(x)


def view_tree(rec: dict, index: int = 0) -> dict:
    """One dump record as the viewer draws it (token ids and log-probs left out)."""
    raw = {n["id"]: n for n in rec["nodes"]}
    kids: dict[int, list[int]] = {}
    for n in rec["nodes"]:
        kids.setdefault(n["parent"], []).append(n["id"])
    root = next((p for p in kids if p not in raw), 0)
    order = []  # depth-first, children in their order: the order the page draws them in
    stack = [root]
    while stack:
        nid = stack.pop()
        if nid != root:
            order.append(nid)
        stack.extend(reversed(kids.get(nid, [])))
    leaves = {nid for nid in order if nid not in kids}

    below: dict[int, list[float]] = {}  # leaf rewards under each node (root included)
    for nid in reversed(order):
        n = raw[nid]
        rs = [float(n["reward"])] if nid in leaves and n.get("reward") is not None else []
        for c in kids.get(nid, []):
            rs += below[c]
        below[nid] = rs
    below[root] = [r for c in kids.get(root, []) for r in below[c]]

    method = rec.get("method", "treerpo")
    groups = {}
    if method == "treerpo":
        for parent, members in kids.items():
            values = [_num(raw[c].get("value")) for c in members]
            known = [v for v in values if v is not None]
            std = _std(known)
            dump_pruned = [raw[c].get("pruned") for c in members]
            if len(members) < 2:
                state = "single"
            elif known and max(known) - min(known) <= 1e-12:
                state = "zero-variance"
            elif any(p is not None for p in dump_pruned):
                state = "pruned" if all(dump_pruned) else "kept"
            else:  # an older dump: values differ, yet no member got credit
                advs = [_num(raw[c].get("advantage")) for c in members]
                state = "pruned" if all(a == 0.0 for a in advs if a is not None) and None not in advs else "kept"
            groups[parent] = {"size": len(members), "std": std, "state": state}
    else:
        for nid in [root] + order:
            rs = below[nid]
            if nid == root or (nid not in leaves and len(rs) >= 2):
                groups[nid] = {"size": len(rs), "mean": sum(rs) / len(rs) if rs else None,
                               "state": "zero-variance" if rs and max(rs) - min(rs) <= 1e-12 else "kept"}

    def path_text(nid: int) -> str:
        parts = []
        while nid in raw:
            parts.append(raw[nid].get("text") or "")
            nid = raw[nid]["parent"]
        return "".join(reversed(parts))

    nodes = []
    for nid in order:
        n = raw[nid]
        out = {"id": nid, "parent": n["parent"] if n["parent"] in raw else None, "depth": n.get("depth"),
               "text": n.get("text") or "", "tokens": n.get("tokens"), "stop": n.get("stop"),
               "value": _num(n.get("value")), "adv": _num(n.get("advantage"))}
        if method == "treerpo":
            out["group"] = n["parent"]
        else:
            ancestors, p = [], n["parent"]
            while p in raw:
                ancestors.append(p)
                p = raw[p]["parent"]
            out["groups"] = [root] + [a for a in reversed(ancestors) if a in groups] if nid in leaves else None
            out["subgroup"] = nid in groups
        if nid in leaves:
            out["reward"] = _num(n.get("reward"))
            out["answer"] = last_boxed(path_text(nid))
        nodes.append(out)

    leaf_nodes = [n for n in nodes if n["id"] in leaves]
    if method == "treepo":  # a segment above the leaves: the mean A_i of the leaves below it
        adv_below: dict[int, list[float]] = {}
        for n in reversed(nodes):
            own = [n["adv"]] if n["id"] in leaves and n["adv"] is not None else []
            adv_below[n["id"]] = own + [a for c in kids.get(n["id"], []) for a in adv_below[c]]
            if n["id"] not in leaves:
                a = adv_below[n["id"]]
                n["adv_below"] = sum(a) / len(a) if a else None
    rewards = [n["reward"] for n in leaf_nodes if n["reward"] is not None]
    depth_of = {n["id"]: (n["depth"] or 0) for n in nodes}
    tokens_of = {n["id"]: (n["tokens"] or 0) for n in nodes}

    def path_tokens(nid: int) -> int:
        total = 0
        while nid in raw:
            total += tokens_of[nid]
            nid = raw[nid]["parent"]
        return total

    summary = {
        "leaves": len(leaf_nodes),
        "depth": max((depth_of[n["id"]] for n in leaf_nodes), default=0),
        "tokens": sum(tokens_of.values()),
        "flat_tokens": sum(path_tokens(n["id"]) for n in leaf_nodes),
        "accuracy": sum(r > 0 for r in rewards) / len(rewards) if rewards else None,
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

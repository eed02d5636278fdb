"""One tree as a JSON record: a line of the tree dump (`tree.rollout.dump_path`), and back.

    {"step": 4, "prompt_uid": ..., "method": "treerpo", "prompt": <text>, "prompt_tokens": 35,
     "prompt_ids": [...], "advantage_options": {...},
     "nodes": [{"id", "parent", "path", "depth", "text", "tokens", "token_ids", "logprobs",
                "global_steps", "stop", "reward", "value", "advantage", "pruned"}, ...]}

One entry per node except the root (id 0), in the tree's node order; `global_steps` is the
(first, last) policy version (verl's global step) that generated the segment. What goes into
`advantage` and `pruned` is the caller's: `treerpo.advantages.per_tree.tree_record` writes the
tree's own advantages. `from_record` rebuilds the `Tree` (segments, stop reasons, rewards,
values) so that a reader (`treerpo view`) runs the same code on it as the trainer did.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator, Optional, Sequence

from treerpo.tree.tree import Node, StopReason, Tree


def to_record(tree: Tree, decode: Callable[[list[int]], str], method: str, options: dict,
              step: Optional[int] = None, advantage: Optional[Sequence[Optional[float]]] = None,
              pruned: Optional[Sequence[Optional[bool]]] = None) -> dict:
    """The record of `tree`; `advantage` and `pruned` are indexed like `tree.nodes` (None: unset)."""
    position = {id(n): i for i, n in enumerate(tree.nodes)}

    def at(values, n):
        return None if values is None else values[position[id(n)]]

    return {
        "step": step,
        "prompt_uid": tree.prompt_uid,
        "method": method,
        "prompt": decode(tree.prompt_ids),
        "prompt_tokens": len(tree.prompt_ids),
        "prompt_ids": list(tree.prompt_ids),
        "advantage_options": dict(options),
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
                "advantage": at(advantage, n),
                "pruned": at(pruned, n),
            }
            for n in tree.nodes
            if n.parent is not None
        ],
    }


def from_record(rec: dict) -> tuple[Tree, dict[int, Node]]:
    """The tree of a record, and its nodes by the record's ids (the root under the parent id that
    the first-level nodes name). Children keep the order of their `path` index; a node without
    `token_ids` gets `tokens` placeholder ids, so that segment lengths and ends stay right."""
    tree = Tree(list(rec.get("prompt_ids") or []), str(rec.get("prompt_uid", "")))
    raw = {n["id"]: n for n in rec["nodes"]}
    root_id = next((n["parent"] for n in rec["nodes"] if n["parent"] not in raw), 0)
    by_id: dict[int, Node] = {root_id: tree.root}
    children: dict[int, list[dict]] = {}
    for n in rec["nodes"]:
        children.setdefault(n["parent"], []).append(n)
    queue = [root_id]
    for pid in queue:  # breadth-first: a parent exists before its children
        kids = sorted(children.get(pid, []), key=lambda n: (n.get("path") or [0])[-1])
        for n in kids:
            ids = n.get("token_ids")
            if ids is None:
                ids = [0] * int(n.get("tokens") or 0)
            stop = StopReason(n["stop"]) if n.get("stop") else None
            node = tree.add_child(by_id[pid], ids, n.get("logprobs"), stop)
            node.reward = n.get("reward")
            node.value = n.get("value")
            by_id[n["id"]] = node
            queue.append(n["id"])
    return tree, by_id


def append_jsonl(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_records(path: str, step: Optional[int] = None, prompt: Optional[str] = None) -> Iterator[dict]:
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


def keep_steps(path, last_step: int) -> int:
    """Rewrite the dump at `path` keeping the records of steps <= `last_step` (a resumed run samples
    the later steps again); atomic (temporary file, then rename). Returns the records dropped."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    kept = [line for line in lines if (json.loads(line).get("step") or 0) <= last_step]
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in kept)
    os.replace(tmp, path)
    return len(lines) - len(kept)

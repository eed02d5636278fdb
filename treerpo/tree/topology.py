"""How a leaf's place in its tree travels with its training row.

verl 0.9.1's v1 trainer passes an advantage estimator exactly one piece of per-row metadata: the
`uid` string (`PPOTrainer._compute_advantage` fetches `uid, response_mask, rm_scores, ...` and
nothing else). So the tree agent loop writes each leaf's topology into its row's uid, and the
estimators read it back here. This module is the only place that knows the format.

Format `tree1` (current)::

    <prompt_uid>#tree1#<path>#<ends>

    prompt_uid  the dataset prompt's uid (may itself contain '#': we parse from the right)
    path        child indices from the root to the leaf, '.'-separated: "0.3.1" is the root's
                first child's fourth child's second child; its length is the leaf's depth
    ends        for each segment on the path, the offset in the response where it ends,
                '.'-separated and strictly increasing: "384.768.901" means segment 1 covers
                response tokens [0, 384), segment 2 [384, 768), segment 3 [768, 901)

Two rows share a node exactly when they share the prompt uid and a path prefix; a shared node
must have the same end in every row that holds it. Anything that does not parse raises a
ValueError naming the uid. verl's padding rows (uid "pad<hex>", all-zero response mask) are
recognised by `is_padding_uid` and ignored by the estimators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

FORMAT = "tree1"
SEP = "#"
PAD_PREFIX = "pad"  # verl.trainer.ppo.padding_utils names padding rows f"pad{uuid4().hex}"


@dataclass(frozen=True)
class LeafTopology:
    prompt_uid: str
    path: tuple[int, ...]
    ends: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.path)


def encode(prompt_uid: str, path: Sequence[int], ends: Sequence[int], check: bool = True) -> str:
    """The uid for the leaf at `path` whose segments end at `ends` (see module docstring).
    `check=False` only labels a leaf (messages of an in-process table), without validating it."""
    topo = LeafTopology(str(prompt_uid), tuple(int(p) for p in path), tuple(int(e) for e in ends))
    if check:
        _check(topo, f"<encoding for prompt {prompt_uid!r}>")
    return SEP.join([topo.prompt_uid, FORMAT, ".".join(map(str, topo.path)), ".".join(map(str, topo.ends))])


def decode(uid: str) -> LeafTopology:
    """Parse a uid written by `encode`; raise ValueError naming the uid if it cannot be read."""
    if not isinstance(uid, str):
        raise ValueError(f"tree uid must be a string, got {type(uid).__name__}: {uid!r}")
    parts = uid.rsplit(SEP, 3)
    if len(parts) != 4 or parts[1] != FORMAT:
        version = parts[1] if len(parts) == 4 else None
        hint = (
            f"unknown topology format {version!r} (this treerpo reads {FORMAT!r})"
            if version is not None and version.startswith("tree")
            else "it carries no tree topology: were these rows sampled by the tree agent loop "
            "(actor_rollout_ref.rollout.agent.default_agent_loop=tree_agent)?"
        )
        raise ValueError(f"cannot read tree topology from uid {uid!r}: {hint}")
    prompt_uid, _, path_s, ends_s = parts
    try:
        path = tuple(int(p) for p in path_s.split("."))
        ends = tuple(int(e) for e in ends_s.split("."))
    except ValueError:
        raise ValueError(f"cannot read tree topology from uid {uid!r}: path and ends must be integers") from None
    topo = LeafTopology(prompt_uid, path, ends)
    _check(topo, uid)
    return topo


@dataclass
class BatchTopology:
    """The topology of every row of a batch, as arrays (padding rows: depth 0, prompt None)."""

    prompt_uids: list
    padding: np.ndarray  # (B,) bool
    depth: np.ndarray  # (B,) int64
    paths: np.ndarray  # (B, Dmax) int64, -1 past the depth
    ends: np.ndarray  # (B, Dmax) int64, 0 past the depth


def decode_batch(uids: Sequence) -> BatchTopology:
    """`decode` for a whole batch: one light parse per row, the checks vectorised.

    Any row that fails is handed to `decode`, which raises the ValueError naming it.
    """
    b = len(uids)
    prompt_uids: list = [None] * b
    padding = np.zeros(b, dtype=bool)
    paths: list[list[int]] = [[]] * b
    ends: list[list[int]] = [[]] * b
    for r, uid in enumerate(uids):
        if is_padding_uid(uid):
            padding[r] = True
            continue
        try:
            prompt, fmt, path_s, ends_s = uid.rsplit(SEP, 3)
            path = [int(x) for x in path_s.split(".")]
            end = [int(x) for x in ends_s.split(".")]
        except (AttributeError, ValueError):
            decode(uid)  # raises with the reason
            raise  # pragma: no cover
        if fmt != FORMAT or not prompt or len(path) != len(end):
            decode(uid)
        prompt_uids[r], paths[r], ends[r] = prompt, path, end
    depth = np.fromiter((len(p) for p in paths), dtype=np.int64, count=b)
    width = max(int(depth.max(initial=0)), 1)
    paths_a = np.full((b, width), -1, dtype=np.int64)
    ends_a = np.zeros((b, width), dtype=np.int64)
    valid = np.arange(width)[None, :] < depth[:, None]
    if valid.any():
        paths_a[valid] = np.fromiter((x for p in paths for x in p), dtype=np.int64)
        ends_a[valid] = np.fromiter((x for e in ends for x in e), dtype=np.int64)
    prev = np.concatenate([np.zeros((b, 1), dtype=np.int64), ends_a[:, :-1]], axis=1)
    bad = ((paths_a < 0) | (ends_a <= prev)) & valid
    bad_rows = (bad.any(axis=1) | ((depth == 0) & ~padding)).nonzero()[0]
    for r in bad_rows[:1]:
        decode(uids[r])
    return BatchTopology(prompt_uids, padding, depth, paths_a, ends_a)


def is_padding_uid(uid: object) -> bool:
    return isinstance(uid, str) and uid.startswith(PAD_PREFIX) and SEP + FORMAT + SEP not in uid


def _check(topo: LeafTopology, uid: str) -> None:
    if not topo.prompt_uid:
        raise ValueError(f"bad tree uid {uid!r}: empty prompt uid")
    if not topo.path:
        raise ValueError(f"bad tree uid {uid!r}: empty path")
    if len(topo.path) != len(topo.ends):
        raise ValueError(f"bad tree uid {uid!r}: path has {len(topo.path)} levels but {len(topo.ends)} ends")
    if any(p < 0 for p in topo.path):
        raise ValueError(f"bad tree uid {uid!r}: negative child index")
    prev = 0
    for e in topo.ends:
        if e <= prev:
            raise ValueError(f"bad tree uid {uid!r}: segment ends must be positive and strictly increasing")
        prev = e


def leaf_uid(tree, leaf, check: bool = True) -> str:
    """The uid of `leaf`'s row in `tree` (a `treerpo.tree.tree.Tree`)."""
    return encode(tree.prompt_uid, leaf.path(), tree.segment_ends(leaf), check)

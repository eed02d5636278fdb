"""Tree samplers: TreeRPO's N-ary tree and TreePO's budgeted segment tree, engine-agnostic.

Both grow a tree level by level: every active path generates one segment, all of them at once
(concurrent calls that the engine batches), then the paths are classified and the next level is
decided. Parents are therefore always generated before their children, each child's request
carries its parent's full token prefix, and every call of one tree uses the same request_id.
All decisions use token ids; text is only read (through `detokenize`) to spot boxed answers and
repetition. The same seed and the same engine outputs give the same tree.

TreeRPO (ALGORITHMS.md 1):  every node that did not stop gets N children; a path stops at EOS
(an early leaf), at depth D, or at the maximum response length.

TreePO (ALGORITHMS.md 2), per prompt with leaf budget w, branching b, segment length l, depth d:
    1. the root gets k0 children (k0 uniform in init_branches)
    2. each active path generates one segment and is classified: FINISHED, EOS, MAX_LENGTH,
       MAX_DEPTH, REPETITION, or still active
    3. with A active paths, F leaves so far (this step's f included):
           total = max(A, min(w - F, b * f + b * A))
       new paths, split over the A active paths by the divergence policy (treerpo.sampling.divergence);
       a path given k continues as k children of its last node (k = 1: a chain)
    4. fallback, when no path is active and F < w: the leaves that ended in FINISHED or EOS, in
       random order, are cut at a random segment boundary (a node at depth 1 .. min(depth, d) - 1,
       or the prompt for one-segment leaves) and re-branched min(b, budget left) times; with no
       such leaf, the prompt is re-branched. Repeat from 2 until F = w.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Callable, Optional

from treerpo.sampling.divergence import path_score, split_budget
from treerpo.sampling.options import RolloutOptions
from treerpo.sampling.segments import SegmentSource, classify
from treerpo.sampling.tree import Node, StopReason, Tree

Detokenize = Optional[Callable[[list[int]], str]]


def tree_rng(seed: int, prompt_uid: str) -> random.Random:
    """The sampler's random stream for one prompt: a function of (seed, prompt uid) only."""
    digest = hashlib.sha256(f"{seed}:{prompt_uid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


async def _grow(tree: Tree, source: SegmentSource, request_id: str, jobs: list[tuple[Node, int]]):
    """Generate one segment for each (parent, max_tokens) job, concurrently; returns the children."""
    segs = await asyncio.gather(
        *(source.continue_(request_id, tree.prefix_ids(parent), max_tokens) for parent, max_tokens in jobs)
    )
    children = []
    for (parent, _), seg in zip(jobs, segs):
        child = tree.add_child(parent, seg.token_ids, seg.logprobs)
        child.num_cached_tokens = seg.num_cached_tokens
        child.global_steps = seg.global_steps
        children.append((child, seg))
    return children


async def sample_treerpo(
    prompt_ids: list[int],
    prompt_uid: str,
    source: SegmentSource,
    opts: RolloutOptions,
    max_response_tokens: int,
    request_id: Optional[str] = None,
    detokenize: Detokenize = None,
) -> Tree:
    tree = Tree(prompt_ids, prompt_uid)
    request_id = request_id or f"tree-{prompt_uid}"
    max_resp = max_response_tokens
    frontier = [tree.root]
    for _ in range(opts.max_steps):
        if not frontier:
            return tree
        jobs = [(p, min(opts.step_tokens, max_resp - p.end)) for p in frontier for _ in range(opts.branching)]
        frontier = []
        for child, seg in await _grow(tree, source, request_id, jobs):
            reason = classify(seg, child.depth, child.end, max_depth=opts.depth, max_response=max_resp,
                              detokenize=detokenize)
            if reason is None:
                frontier.append(child)
            else:
                child.stop_reason = reason
    raise RuntimeError(f"tree for prompt {prompt_uid!r} did not finish within {opts.max_steps} rounds")


async def sample_treepo(
    prompt_ids: list[int],
    prompt_uid: str,
    source: SegmentSource,
    opts: RolloutOptions,
    max_response_tokens: int,
    request_id: Optional[str] = None,
    detokenize: Detokenize = None,
) -> Tree:
    tree = Tree(prompt_ids, prompt_uid)
    request_id = request_id or f"tree-{prompt_uid}"
    rng = tree_rng(opts.seed, prompt_uid)
    w, b, d, l = opts.leaves, opts.branch, opts.max_segments, opts.segment_tokens
    max_resp = max_response_tokens
    pending: list[tuple[Node, int]] = [(tree.root, min(rng.randint(*opts.init_branches), w))]
    n_leaves = 0
    for _ in range(opts.max_steps):
        if not pending:
            if n_leaves >= w:
                return tree
            pending = _fallback(tree, rng, w - n_leaves, b, d)
        jobs = [(p, min(l, max_resp - p.end)) for p, k in pending for _ in range(k)]
        active, finished_now = [], 0
        for child, seg in await _grow(tree, source, request_id, jobs):
            reason = classify(seg, child.depth, child.end, max_depth=d, max_response=max_resp, detokenize=detokenize,
                              repetition=(opts.repetition_window, opts.repetition_count))
            if reason is None:
                active.append(child)
            else:
                child.stop_reason = reason
                finished_now += 1
        n_leaves += finished_now
        pending = []
        if active:
            a = len(active)
            total = max(a, min(w - n_leaves, b * finished_now + b * a))
            scores = (
                [path_score(n, opts.divergence_score) for n in active] if opts.divergence == "logprob" else None
            )
            counts = split_budget(total, a, opts.divergence, rng, scores, opts.divergence_temperature,
                                  opts.divergence_prefer)
            pending = list(zip(active, counts))
    raise RuntimeError(f"tree for prompt {prompt_uid!r} did not finish within {opts.max_steps} rounds")


def _fallback(tree: Tree, rng: random.Random, budget: int, b: int, d: int) -> list[tuple[Node, int]]:
    candidates = [leaf for leaf in tree.leaves() if leaf.stop_reason in (StopReason.FINISHED, StopReason.EOS)]
    if not candidates:  # restart from the prompt
        return [(tree.root, min(b, budget))]
    rng.shuffle(candidates)
    pending = []
    for leaf in candidates:
        if budget <= 0:
            break
        lineage = leaf.lineage()
        top = min(len(lineage), d) - 1  # deepest cut that keeps the children within depth d
        node = lineage[rng.randint(1, top) - 1] if top >= 1 else tree.root
        k = min(b, budget)
        pending.append((node, k))
        budget -= k
    return pending


async def sample_tree(
    prompt_ids: list[int],
    prompt_uid: str,
    source: SegmentSource,
    opts: RolloutOptions,
    max_response_tokens: int,
    request_id: Optional[str] = None,
    detokenize: Detokenize = None,
) -> Tree:
    """Sample one tree with the method named by `opts.method`."""
    fn = sample_treerpo if opts.method == "treerpo" else sample_treepo
    return await fn(prompt_ids, prompt_uid, source, opts, max_response_tokens, request_id, detokenize)

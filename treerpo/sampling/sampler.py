"""Tree samplers: TreeRPO's N-ary tree and TreePO's budgeted segment tree, engine-agnostic.

Each engine call generates one segment: it continues the prompt plus the full token prefix of
the node it extends, so a parent is always generated before its children; calls run
concurrently (the engine batches them) and every call of one tree uses the same request_id.
All decisions use token ids; text is only read (through `detokenize`) to spot boxed answers and
repetition. The same seed and the same engine outputs give the same tree (node ids, children
and leaf order, hence the training rows), whatever order the engine's calls complete in.

Seeded segments (`seed_key`, from `tree.rollout.seeded_segments`): each call also carries an
engine seed, a function of (tree.rollout.seed, seed_key, the new node's path of child indices)
only (`segment_seed`), so the engine's outputs themselves repeat: the same policy, prompt and
key resample the same tree, up to the engine's floating-point noise.

TreeRPO (ALGORITHMS.md 1):  every node that did not stop gets N children; a path stops at EOS
(an early leaf), at depth D, or at the maximum response length. The expansion is local, so by
default (`tree.rollout.expansion=async`) it has no barrier: a node's N children start as soon as
its own segment is back, whatever its siblings and cousins are doing. The N child slots are
reserved when the calls are launched (children order = launch order) and the nodes are
renumbered breadth-first once the tree is complete (`Tree.renumber`), which is the order the
level-synchronous form adds them in. `expansion=level` keeps that form: every active node of a
level generates at once and the next level starts when the last of them is back.

TreePO (ALGORITHMS.md 2) grows level by level, always: its budget rule (step 3) shares the leaf
budget over all active paths of a step, so a step needs every path's segment first.
Per prompt with leaf budget w, branching b, segment length l, depth d:
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
from typing import Awaitable, Callable, Optional

from treerpo.sampling.divergence import path_score, split_budget
from treerpo.tree.options import RolloutOptions
from treerpo.sampling.segments import Segment, SegmentSource, classify
from treerpo.tree.tree import Node, StopReason, Tree

Detokenize = Optional[Callable[[list[int]], str]]


def tree_rng(seed: int, prompt_uid: str) -> random.Random:
    """The sampler's random stream for one prompt: a function of (seed, prompt uid) only."""
    digest = hashlib.sha256(f"{seed}:{prompt_uid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def segment_seed(seed: int, seed_key: str, path: tuple[int, ...]) -> int:
    """The engine seed of the segment that becomes the node at `path` (child indices from the root)."""
    digest = hashlib.sha256(f"{seed}:{seed_key}:{'/'.join(map(str, path))}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _seeder(opts: RolloutOptions, seed_key: Optional[str]) -> Callable[[Node, int], Optional[int]]:
    """(parent, index of the new child) -> its segment's engine seed, or None when unseeded."""
    if seed_key is None:
        return lambda parent, index: None
    return lambda parent, index: segment_seed(opts.seed, seed_key, parent.path() + (index,))


def _fill(node: Node, seg: Segment) -> None:
    Tree.set_segment(node, seg.token_ids, seg.logprobs)
    node.num_cached_tokens = seg.num_cached_tokens
    node.global_steps = seg.global_steps


async def _grow(tree: Tree, parents: list[Node], call: Callable[[Node, int], Awaitable[Segment]]):
    """One segment for each parent (a parent listed k times gets k children), all calls at once;
    returns the (child, segment) pairs, children in the order of `parents`. `call(parent, index)`
    generates the segment of the parent's child number `index`."""
    index, calls = {}, []
    for p in parents:
        i = index.setdefault(id(p), len(p.children))
        index[id(p)] = i + 1
        calls.append(call(p, i))
    segs = await asyncio.gather(*calls)
    children = []
    for parent, seg in zip(parents, segs):
        child = tree.add_child(parent, [])
        _fill(child, seg)
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
    seed_key: Optional[str] = None,
) -> Tree:
    tree = Tree(prompt_ids, prompt_uid)
    request_id = request_id or f"tree-{prompt_uid}"
    max_resp = max_response_tokens
    seed_of = _seeder(opts, seed_key)

    def call(parent: Node, index: int) -> Awaitable[Segment]:  # a child continues its parent's full prefix
        return source.continue_(request_id, tree.prefix_ids(parent),
                                min(opts.step_tokens_at(parent.depth + 1), max_resp - parent.end),
                                seed=seed_of(parent, index))

    def stop(child: Node, seg: Segment) -> Optional[StopReason]:
        return classify(seg, child.depth, child.end, max_depth=opts.depth, max_response=max_resp, detokenize=detokenize)

    grow = _treerpo_levels if opts.expansion == "level" else _treerpo_barrier_free
    await grow(tree, opts, call, stop)
    return tree


async def _treerpo_levels(tree: Tree, opts: RolloutOptions, call, stop) -> None:
    """Level-synchronous: every active node of a level generates at once; the next level waits for all."""
    frontier = [tree.root]
    for _ in range(opts.max_steps):
        parents = [p for p in frontier for _ in range(opts.branching)]
        frontier = []
        for child, seg in await _grow(tree, parents, call):
            child.stop_reason = stop(child, seg)
            if child.stop_reason is None:
                frontier.append(child)
        if not frontier:
            return
    raise _unfinished(tree, opts)


async def _treerpo_barrier_free(tree: Tree, opts: RolloutOptions, call, stop) -> None:
    """A node's N children are launched as soon as its own call returns. Their slots are reserved
    at launch (each node's children are in launch order); node ids are made canonical once the
    tree is complete (`Tree.renumber`, breadth-first), so completion order changes nothing."""

    async def generate(child: Node) -> Node:
        seg = await call(child.parent, child.index_in_parent)
        _fill(child, seg)
        child.stop_reason = stop(child, seg)
        return child

    def launch(parent: Node) -> set:
        if parent.depth >= opts.max_steps:
            raise _unfinished(tree, opts)
        return {asyncio.ensure_future(generate(tree.add_child(parent, []))) for _ in range(opts.branching)}

    running = launch(tree.root)
    try:
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for child in sorted((task.result() for task in done), key=lambda n: n.node_id):  # launch order
                if child.stop_reason is None:
                    running |= launch(child)
    except BaseException:  # a failed call (or a cancelled sampler) stops the whole tree
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    tree.renumber()


def _unfinished(tree: Tree, opts: RolloutOptions) -> RuntimeError:
    return RuntimeError(f"tree for prompt {tree.prompt_uid!r} did not finish within {opts.max_steps} rounds")


async def sample_treepo(
    prompt_ids: list[int],
    prompt_uid: str,
    source: SegmentSource,
    opts: RolloutOptions,
    max_response_tokens: int,
    request_id: Optional[str] = None,
    detokenize: Detokenize = None,
    seed_key: Optional[str] = None,
) -> Tree:
    tree = Tree(prompt_ids, prompt_uid)
    request_id = request_id or f"tree-{prompt_uid}"
    rng = tree_rng(opts.seed, prompt_uid if seed_key is None else seed_key)  # seeded: no random uid in it
    w, b, d, l = opts.leaves, opts.branch, opts.max_segments, opts.segment_tokens
    max_resp = max_response_tokens
    seed_of = _seeder(opts, seed_key)

    def call(parent: Node, index: int) -> Awaitable[Segment]:
        return source.continue_(request_id, tree.prefix_ids(parent), min(l, max_resp - parent.end),
                                seed=seed_of(parent, index))

    pending: list[tuple[Node, int]] = [(tree.root, min(rng.randint(*opts.init_branches), w))]
    n_leaves = 0
    for _ in range(opts.max_steps):
        if not pending:
            if n_leaves >= w:
                return tree
            pending = _fallback(tree, rng, w - n_leaves, b, d)
        parents = [p for p, k in pending for _ in range(k)]
        active, finished_now = [], 0
        for child, seg in await _grow(tree, parents, call):
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
    raise _unfinished(tree, opts)


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
    seed_key: Optional[str] = None,
) -> Tree:
    """Sample one tree with the method named by `opts.method`; `seed_key` seeds its engine calls
    (module docstring; None: unseeded, the engine's own randomness)."""
    fn = sample_treerpo if opts.method == "treerpo" else sample_treepo
    return await fn(prompt_ids, prompt_uid, source, opts, max_response_tokens, request_id, detokenize, seed_key)

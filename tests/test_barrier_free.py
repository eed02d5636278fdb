"""Barrier-free TreeRPO expansion (`tree.rollout.expansion=async`) against the level-synchronous form.

The scripted engine's outputs here are a function of (prefix, how many calls with that prefix were
issued before), i.e. of the node being generated, not of the order calls are issued or complete in;
`delay` makes calls complete in another order (event-loop turns, no wall time).
"""

import asyncio
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_engine import ScriptedEngine
from treerpo.tree.options import RolloutOptions
from treerpo.sampling.rows import leaf_rows
from treerpo.sampling.sampler import sample_tree
from treerpo.sampling.segments import SegmentSource
from treerpo.tree.tree import StopReason

PROMPT = [1, 1, 1]
EOS = 2


def node_rule(p_eos=0.0, eos_at=(), step=4):
    """Tokens drawn from (prefix, sibling index); EOS with probability p_eos per segment, and in the
    first child of every node at the depths in `eos_at` (`step`: the full segment length)."""
    seen = Counter()

    def rule(prefix, n, i):
        key = tuple(prefix)
        k = seen[key]
        seen[key] += 1
        r = random.Random(repr((key, k)))
        toks = [r.randrange(10, 1000) for _ in range(n)]
        depth = (len(prefix) - len(PROMPT)) // step + 1  # every segment but a path's last is full
        if r.random() < p_eos or (k == 0 and depth in eos_at):
            toks[r.randrange(n)] = EOS
        return toks

    return rule


def seeded_delay(seed, most=30):
    rng = random.Random(seed)
    return lambda prefix, i: rng.randint(1, most)


def sample(rule, opts, max_resp=10_000, delay=None):
    eng = ScriptedEngine(rule, len(PROMPT), delay)
    src = SegmentSource(eng, {"temperature": 1.0}, EOS)
    tree = asyncio.run(sample_tree(PROMPT, "q", src, opts, max_resp))
    return tree, eng


def signature(tree):
    """Everything training reads from a tree (the scripted logprobs follow the call index, so not them)."""
    nodes = [(n.node_id, n.parent.node_id if n.parent else None, n.path(), n.depth, n.start,
              tuple(n.token_ids), n.stop_reason) for n in tree.nodes]
    rows = [(r.uid, tuple(r.response_ids), tuple(r.response_mask)) for r in leaf_rows(tree, "once")]
    return nodes, rows


def opts(expansion, n=3, d=3, l=4, **kw):
    return RolloutOptions(method="treerpo", branching=n, depth=d, step_tokens=l, expansion=expansion, **kw)


# ---- (a) the same tree as the level-synchronous form ------------------------------------------------
@pytest.mark.parametrize("delay_seed", [None, 0, 1])
@pytest.mark.parametrize("max_resp", [10_000, 10])  # 10: the third segment is cut to 2 tokens (MAX_LENGTH)
def test_same_tree_as_level_synchronous_with_early_eos(delay_seed, max_resp):
    rule_args = dict(eos_at={1, 2})  # first child at depth 1 and every first grandchild end early
    level, _ = sample(node_rule(**rule_args), opts("level"), max_resp)
    delay = seeded_delay(delay_seed) if delay_seed is not None else None
    barrier_free, _ = sample(node_rule(**rule_args), opts("async"), max_resp, delay)
    assert signature(barrier_free) == signature(level)
    stops = {(l.depth, l.stop_reason) for l in level.leaves()}
    assert {(1, StopReason.EOS), (2, StopReason.EOS)} <= stops  # early leaves at two depths
    assert (3, StopReason.MAX_LENGTH if max_resp == 10 else StopReason.MAX_DEPTH) in stops


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 12), st.floats(0, 0.6),
       st.integers(0, 10**6))
def test_same_tree_as_level_synchronous_random_shapes(n, d, l, max_resp, p_eos, seed):
    level, _ = sample(node_rule(p_eos), opts("level", n, d, l), max_resp)
    barrier_free, _ = sample(node_rule(p_eos), opts("async", n, d, l), max_resp, seeded_delay(seed))
    assert signature(barrier_free) == signature(level)


def test_equal_latencies_issue_calls_in_the_level_synchronous_order():
    """With every call equally fast the barrier-free form issues its calls breadth-first, as the
    level form does, so even an engine whose outputs follow the call index gives the same tree."""
    by_index = lambda prefix, n, i: [EOS] if i % 4 == 1 else [1000 + i] * n  # noqa: E731
    trees = [sample(by_index, opts(expansion))[0] for expansion in ("level", "async")]
    full = [[(n.node_id, n.path(), tuple(n.token_ids), tuple(n.logprobs or ())) for n in t.nodes] for t in trees]
    assert full[0] == full[1]
    assert {l.depth for l in trees[0].leaves() if l.stop_reason == StopReason.EOS} == {1, 2, 3}


# ---- (b) determinism whatever the completion order --------------------------------------------------
def test_same_tree_whatever_the_completion_order():
    trees, orders = [], set()
    for seed in [None, *range(6)]:
        tree, eng = sample(node_rule(0.2), opts("async"), delay=seeded_delay(seed) if seed is not None else None)
        trees.append(signature(tree))
        orders.add(tuple(c["prefix"] + tuple(c["tokens"]) for c in sorted(eng.calls, key=lambda c: c["returned"])))
    assert len(orders) == 7  # the calls really completed in seven different orders
    assert all(t == trees[0] for t in trees)


# ---- (c) parents before children, full prefixes, one request id -------------------------------------
@pytest.mark.parametrize("expansion", ["async", "level"])
@pytest.mark.parametrize("delay_seed", [None, 7])
def test_each_call_continues_its_parents_full_path_after_the_parent_returned(expansion, delay_seed):
    unique = lambda prefix, n, i: [1000 + i] * n  # noqa: E731  every call's output is its own
    delay = seeded_delay(delay_seed) if delay_seed is not None else None
    tree, eng = sample(unique, opts(expansion), delay=delay)
    calls = {(c["prefix"], tuple(c["tokens"])): c for c in eng.calls}
    assert len(calls) == len(eng.calls) == len(tree.nodes) - 1
    assert {c["request_id"] for c in eng.calls} == {"tree-q"}
    node_call = {}
    for node in tree.nodes[1:]:
        prefix = tuple(PROMPT + [t for a in node.lineage()[:-1] for t in a.token_ids])
        node_call[node.node_id] = calls.pop((prefix, tuple(node.token_ids)))  # KeyError: no such call
    for node in tree.nodes[1:]:
        if node.parent is not tree.root:
            assert node_call[node.parent.node_id]["returned"] < node_call[node.node_id]["started"]


# ---- (d) no barrier: a fast node's children do not wait for a slow sibling --------------------------
@pytest.mark.parametrize("expansion", ["async", "level"])
def test_fast_siblings_children_start_before_slow_sibling_returns(expansion):
    slow = lambda prefix, i: 100 if i == 0 else 1  # noqa: E731  the first child of the root is slow
    tree, eng = sample(node_rule(), opts(expansion, n=2, d=3), delay=slow)
    slow_call = eng.calls[0]
    fast = tree.root.children[1]
    fast_prefix = tuple(PROMPT + fast.token_ids)
    under_fast = [c for c in eng.calls if c["prefix"][: len(fast_prefix)] == fast_prefix]
    assert len(under_fast) == 2 + 4  # its children and grandchildren
    early = [c for c in under_fast if c["started"] < slow_call["returned"]]
    if expansion == "async":
        assert len(early) == 6  # the fast sibling's whole subtree was generated meanwhile
    else:
        assert early == []  # the level-synchronous form waits for the slow sibling


# ---- failures and bounds -------------------------------------------------------------------------------
def test_a_failed_call_stops_the_tree_and_leaves_no_task_behind():
    def rule(prefix, n, i):
        if i == 5:
            raise RuntimeError("engine failed")
        return [1000 + i] * n

    eng = ScriptedEngine(rule, len(PROMPT), seeded_delay(1))

    async def main():
        with pytest.raises(RuntimeError, match="engine failed"):
            await sample_tree(PROMPT, "q", SegmentSource(eng, {}, EOS), opts("async"), 10_000)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert any("returned" not in c for c in eng.calls[:5])  # calls in flight were cancelled, not awaited
        issued = len(eng.calls)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(eng.calls) == issued  # nothing goes on expanding the abandoned tree

    asyncio.run(main())


@pytest.mark.parametrize("expansion", ["async", "level"])
def test_max_steps_bounds_the_depth(expansion):
    with pytest.raises(RuntimeError, match="within 2 rounds"):
        sample(node_rule(), opts(expansion, n=2, d=4, max_steps=2))
    assert len(sample(node_rule(), opts(expansion, n=2, d=2, max_steps=2))[0].leaves()) == 4


def test_expansion_option_is_checked():
    with pytest.raises(ValueError, match="tree.rollout.expansion"):
        RolloutOptions(expansion="eager")
    assert RolloutOptions().expansion == "async"

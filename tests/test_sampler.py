"""Tree shapes, stop classes, fallback and scheduling of the samplers, with a scripted engine."""

import asyncio
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_engine import ScriptedEngine
from treerpo.sampling.divergence import split_budget
from treerpo.tree.options import RolloutOptions
from treerpo.sampling.rows import leaf_rows
from treerpo.sampling.sampler import sample_tree
from treerpo.sampling.segments import SegmentSource, is_repetitive
from treerpo.tree.tree import StopReason

PROMPT = [1, 1, 1]
EOS = 2


def run(rule, opts, max_resp=10_000, eos=EOS, detok=None, uid="q"):
    eng = ScriptedEngine(rule, len(PROMPT))
    src = SegmentSource(eng, {"temperature": 1.0}, eos)
    tree = asyncio.run(sample_tree(PROMPT, uid, src, opts, max_resp, detokenize=detok))
    return tree, eng


def call_tokens(prefix, n, i):
    return [1000 + i] * n  # never EOS; each call recognisable


def depth_counts(tree):
    return dict(Counter(n.depth for n in tree.nodes if n.parent is not None))


# ---- TreeRPO -------------------------------------------------------------------------------------
def test_treerpo_full_tree():
    tree, eng = run(call_tokens, RolloutOptions(method="treerpo", branching=3, depth=2, step_tokens=4))
    assert depth_counts(tree) == {1: 3, 2: 9}
    leaves = tree.leaves()
    assert len(leaves) == 9 and all(l.stop_reason == StopReason.MAX_DEPTH for l in leaves)
    assert all(tree.segment_ends(l) == [4, 8] for l in leaves)


def test_treerpo_early_eos_at_first_token_and_eos_list():
    def rule(prefix, n, i):
        if i == 1:
            return [EOS, 5, 5]  # EOS as a segment's first token: a 1-token leaf
        if i == 4:
            return [7, 9, 7, 7]  # second EOS id in the middle of a segment
        return [1000 + i] * n

    tree, _ = run(rule, RolloutOptions(method="treerpo", branching=3, depth=2, step_tokens=4), eos=[EOS, 9])
    first = tree.root.children
    assert first[1].is_leaf and first[1].token_ids == [EOS] and first[1].stop_reason == StopReason.EOS
    assert len(first[0].children) == 3 and len(first[2].children) == 3
    cut = [n for n in tree.nodes if n.token_ids[:2] == [7, 9]]
    assert len(cut) == 1 and cut[0].token_ids == [7, 9] and cut[0].stop_reason == StopReason.EOS
    assert len(tree.leaves()) == 7  # 1 early leaf + 2 x 3


def test_treerpo_max_length_leaf():
    tree, _ = run(call_tokens, RolloutOptions(method="treerpo", branching=2, depth=3, step_tokens=4), max_resp=6)
    assert all(l.stop_reason == StopReason.MAX_LENGTH and l.end == 6 for l in tree.leaves())
    assert depth_counts(tree) == {1: 2, 2: 4}


@pytest.mark.parametrize("expansion", ["async", "level"])
def test_treerpo_step_tokens_per_level(expansion):
    opts = RolloutOptions(method="treerpo", branching=2, depth=3, step_tokens=[2, 5, 3], expansion=expansion)
    assert opts.max_response_tokens == 10
    tree, eng = run(call_tokens, opts)
    assert depth_counts(tree) == {1: 2, 2: 4, 3: 8}
    assert all(tree.segment_ends(l) == [2, 7, 10] for l in tree.leaves())
    assert Counter(c["max_tokens"] for c in eng.calls) == {2: 2, 5: 4, 3: 8}


def test_treerpo_step_tokens_list_needs_one_length_per_level():
    with pytest.raises(ValueError, match=r"tree.rollout.step_tokens=.*one length per level: 2 given, depth is 3"):
        RolloutOptions(method="treerpo", depth=3, step_tokens=[4, 4])
    with pytest.raises(ValueError, match="step_tokens.*>= 1"):
        RolloutOptions(method="treerpo", depth=2, step_tokens=[4, 0])


# ---- TreePO --------------------------------------------------------------------------------------
TREEPO = dict(method="treepo", branch=2, leaves=16, init_branches=2, max_segments=6, segment_tokens=3)


def test_treepo_growth_2_4_8_16_then_chains():
    tree, _ = run(call_tokens, RolloutOptions(**TREEPO))
    assert depth_counts(tree) == {1: 2, 2: 4, 3: 8, 4: 16, 5: 16, 6: 16}
    assert len(tree.leaves()) == 16 and {l.stop_reason for l in tree.leaves()} == {StopReason.MAX_DEPTH}


def detok(ids):
    return "".join({3: "\\boxed{5}", 5: "x", EOS: ""}.get(t, "a") for t in ids)


@pytest.mark.parametrize(
    "segment, max_resp, reason",
    [
        ([7, 3, EOS], 10_000, StopReason.FINISHED),  # boxed answer and EOS
        ([7, 7, EOS], 10_000, StopReason.EOS),
        ([7, 7, 7], 5, StopReason.MAX_LENGTH),
        ([7, 7, 7], 10_000, StopReason.MAX_DEPTH),
        ([5] * 40, 10_000, StopReason.REPETITION),  # 'x' * 40: a 32-char window 9 times
    ],
)
def test_treepo_stop_classes(segment, max_resp, reason):
    opts = RolloutOptions(method="treepo", branch=2, leaves=2, init_branches=2, max_segments=1,
                          segment_tokens=len(segment) if reason != StopReason.MAX_DEPTH else 3)
    if reason == StopReason.MAX_LENGTH:  # 3 + 2 tokens: the second segment is cut at the limit
        opts = RolloutOptions(method="treepo", branch=2, leaves=2, init_branches=2, max_segments=3, segment_tokens=3)
    if reason == StopReason.REPETITION:
        opts = RolloutOptions(method="treepo", branch=2, leaves=2, init_branches=2, max_segments=3, segment_tokens=40)
    tree, _ = run(lambda p, n, i: segment, opts, max_resp=max_resp, detok=detok)
    assert {l.stop_reason for l in tree.leaves()} == {reason}


def test_classification_order_boxed_eos_beats_length():
    opts = RolloutOptions(method="treepo", branch=2, leaves=2, init_branches=2, max_segments=1, segment_tokens=3)
    tree, _ = run(lambda p, n, i: [3, 7, EOS], opts, max_resp=3, detok=detok)
    assert {l.stop_reason for l in tree.leaves()} == {StopReason.FINISHED}


def test_treepo_fallback_refills_to_w():
    def rule(prefix, n, i):  # first segments continue; every second segment ends with EOS
        return [1000 + i] * n if len(prefix) == len(PROMPT) else [7, EOS]

    opts = RolloutOptions(method="treepo", branch=2, leaves=8, init_branches=2, max_segments=4, segment_tokens=2)
    tree, eng = run(rule, opts)
    leaves = tree.leaves()
    assert len(leaves) == 8 and all(l.stop_reason == StopReason.EOS and l.depth == 2 for l in leaves)
    assert len(tree.root.children) == 2  # the fallback re-branched existing nodes, not the prompt
    assert sum(len(c.children) for c in tree.root.children) == 8


def test_treepo_restart_from_prompt_when_no_candidate():
    opts = RolloutOptions(method="treepo", branch=2, leaves=4, init_branches=2, max_segments=4, segment_tokens=3)
    tree, _ = run(call_tokens, opts, max_resp=3)  # every path hits MAX_LENGTH after one segment
    assert len(tree.root.children) == 4
    assert all(l.stop_reason == StopReason.MAX_LENGTH for l in tree.leaves())


# ---- scheduling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [RolloutOptions(method="treerpo", branching=3, depth=3, step_tokens=2),
                                  RolloutOptions(**TREEPO)])
def test_sticky_request_id_and_parents_before_children(opts):
    tree, eng = run(call_tokens, opts, uid="prompt-7")
    assert {c["request_id"] for c in eng.calls} == {"tree-prompt-7"}
    by_output = {c["prefix"] + tuple(c["tokens"]): c for c in eng.calls}
    for c in eng.calls:
        if len(c["prefix"]) > len(PROMPT):
            parent = by_output[c["prefix"]]  # the child's prefix is its parent's full prefix + output
            assert parent["returned"] < c["started"]
    assert len(eng.calls) == len(tree.nodes) - 1


def test_seeded_same_tree_and_seed_matters():
    opts = dict(TREEPO, init_branches=(2, 8))

    def shape(seed, uid="q"):
        tree, _ = run(call_tokens, RolloutOptions(**opts, seed=seed), uid=uid)
        return [(n.path(), tuple(n.token_ids)) for n in tree.nodes]

    assert shape(3) == shape(3)
    assert len({len(shape(s)) for s in range(8)}) > 1  # k0 drawn in [2, 8] changes the tree


def test_logprob_divergence_runs_and_keeps_budget():
    opts = RolloutOptions(**dict(TREEPO, divergence="logprob"))
    tree, _ = run(call_tokens, opts)
    assert len(tree.leaves()) == 16


def test_split_budget():
    rng = random.Random(0)
    assert sorted(split_budget(7, 3, "fixed_avg", rng)) == [2, 2, 3]
    low = split_budget(10, 3, "logprob", rng, scores=[-1.0, -5.0, -3.0], temperature=2.0, prefer="low")
    high = split_budget(10, 3, "logprob", rng, scores=[-1.0, -5.0, -3.0], temperature=2.0, prefer="high")
    assert sum(low) == sum(high) == 10 and min(low + high) >= 1
    assert low[1] == max(low) and high[0] == max(high)
    with pytest.raises(ValueError):
        split_budget(2, 3, "fixed_avg", rng)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.floats(0, 0.9), st.integers(1, 16), st.integers(2, 3), st.integers(1, 6))
def test_treepo_always_reaches_w_leaves(seed, p_eos, w, b, d):
    rng = random.Random(seed)

    def rule(prefix, n, i):
        return [7] * (n - 1) + [EOS] if rng.random() < p_eos else [1000 + i] * n

    opts = RolloutOptions(method="treepo", branch=b, leaves=w, init_branches=(1, 4), max_segments=d,
                          segment_tokens=2, seed=seed)
    tree, _ = run(rule, opts, max_resp=2 * d)
    leaves = tree.leaves()
    assert len(leaves) == w
    assert all(l.depth <= d and l.end <= 2 * d for l in leaves)
    assert all(l.stop_reason is not None for l in leaves)


# ---- rows ---------------------------------------------------------------------------------------
def test_credit_once_trains_each_segment_in_one_row():
    tree, _ = run(call_tokens, RolloutOptions(method="treerpo", branching=2, depth=2, step_tokens=3))
    rows = leaf_rows(tree, "once")
    assert [r.response_mask for r in rows] == [[1] * 6, [0] * 3 + [1] * 3, [1] * 6, [0] * 3 + [1] * 3]
    assert all(r.response_mask == [1] * 6 for r in leaf_rows(tree, "every_row"))
    assert len({r.uid for r in rows}) == 4


def test_repetition_detector():
    assert is_repetitive("ab" * 30)
    assert not is_repetitive("".join(chr(65 + i % 26) + str(i) for i in range(40)))


def test_tree_metrics_from_trees_and_rows():
    import torch

    from tests.helpers import rows_from_trees
    from verl_ext.tree_metrics import tree_stats
    from verl_ext.trainer import tree_metrics

    tree, _ = run(call_tokens, RolloutOptions(method="treerpo", branching=2, depth=2, step_tokens=3))
    for i, leaf in enumerate(tree.leaves()):
        leaf.reward = float(i == 0)  # groups: root {1/2, 0} varies; left {1, 0} varies; right {0, 0} dead
    stats = tree_stats(tree)
    assert stats["generated_tokens"] == 6 * 3 and stats["flat_tokens"] == 4 * 6
    uids, rewards, mask = rows_from_trees([tree])
    pad = "pad0123"
    # verl's padding row is a copy of the batch's first row, extra_fields (and so tree_stats) included
    extra = [{"tree_stats": stats}, {}, {}, {}, {"tree_stats": stats}]
    m = tree_metrics(extra, list(uids) + [pad],
                     torch.cat([rewards.sum(-1), torch.zeros(1)]), torch.cat([mask, torch.zeros(1, mask.shape[1])]),
                     "recursive_mean", is_padding=[False] * 4 + [True])
    assert m["tree/trees"] == 1
    assert m["tree/leaves_per_tree"] == 4 and m["tree/nodes"] == 6
    assert m["tree/flat_over_tree_tokens"] == 24 / 18
    assert m["tree/stop/max_depth"] == 4
    assert m["tree/zero_variance_group_frac"] == 1 / 3
    assert m["tree/cached_prompt_frac"] > 0  # the scripted engine reports the parent prefix as cached


def test_advantage_reward_corr_sees_misaligned_rows():
    import math

    import torch

    from verl_ext.trainer import advantage_reward_corr

    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]])
    adv = torch.tensor([0.5, -0.5, 0.5, -0.5])[:, None].expand(4, 3) * mask
    assert advantage_reward_corr(adv, mask, rewards) == pytest.approx(1.0)  # padding tokens do not count
    assert advantage_reward_corr(adv[[1, 0, 3, 2]], mask[[1, 0, 3, 2]], rewards) == pytest.approx(-1.0)
    assert math.isnan(advantage_reward_corr(torch.zeros(4, 3), mask, rewards))

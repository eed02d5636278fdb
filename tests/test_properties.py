"""Property tests over random trees, rewards and masks (hypothesis)."""

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from tests.helpers import random_tree, rows_from_trees
from treerpo.tree import node_table
from treerpo.advantages.step import step_level_advantages
from treerpo.tree.options import AdvantageOptions

treerpo_fn = get_adv_estimator_fn("treerpo")
treepo_fn = get_adv_estimator_fn("treepo")

OPTION_SETS = [
    ("treerpo", dict(norm="group")), ("treerpo", dict(norm="mean")), ("treerpo", dict(norm="batch")),
    ("treerpo", dict(norm="group", tau=0.0)), ("treerpo", dict(norm="batch", value_rule="leaf_mean")),
    ("treepo", dict()), ("treepo", dict(aggregation="group_size")),
    ("treepo", dict(drop_zero_variance_subgroups=True)),
]
FN = {"treerpo": treerpo_fn, "treepo": treepo_fn}

batches = st.builds(
    lambda seed, n, depth, branch, kind, once, equal: (seed, n, depth, branch, kind, once, equal),
    seed=st.integers(0, 2**31), n=st.integers(1, 4), depth=st.integers(1, 4), branch=st.integers(1, 3),
    kind=st.sampled_from(["binary", "float"]), once=st.booleans(), equal=st.booleans(),
)


def make(params):
    seed, n, depth, branch, kind, once, equal = params
    rng = random.Random(seed)
    trees = [random_tree(rng, f"q{i}", max_depth=depth, max_branch=branch, reward_kind=kind) for i in range(n)]
    if equal:  # all rewards equal
        for t in trees:
            for l in t.leaves():
                l.reward = 1.0
    uids, rewards, mask = rows_from_trees(trees, response_length=None, once=once)
    return rng, trees, uids, rewards, mask


def call(name, opts, uids, rewards, mask):
    return FN[name](rewards, mask, index=uids, config={"tree": {"advantage": opts}})[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.sampled_from(OPTION_SETS))
def test_finite_and_zero_on_masked_tokens(params, option):
    _, _, uids, rewards, mask = make(params)
    adv = call(*option, uids, rewards, mask)
    assert torch.isfinite(adv).all()
    assert (adv[mask == 0] == 0).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.sampled_from(OPTION_SETS), st.integers(0, 5))
def test_invariant_to_row_order_and_padding(params, option, n_pad):
    rng, _, uids, rewards, mask = make(params)
    ref = call(*option, uids, rewards, mask)
    b, t = mask.shape
    pad_uids = np.array([f"pad{rng.getrandbits(64):x}"] * n_pad, dtype=object)
    all_uids = np.concatenate([uids, pad_uids])
    all_rewards = torch.cat([rewards, torch.rand(n_pad, t)])  # verl copies a real row's scores
    all_mask = torch.cat([mask, torch.zeros(n_pad, t)])
    perm = torch.tensor(rng.sample(range(b + n_pad), b + n_pad))
    out = call(*option, all_uids[perm.numpy()], all_rewards[perm], all_mask[perm])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(b + n_pad)
    out = out[inv]
    torch.testing.assert_close(out[:b], ref, atol=1e-5, rtol=1e-5)
    assert (out[b:] == 0).all()


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from(["group", "mean", "batch"]), st.sampled_from(["recursive_mean", "leaf_mean"]))
def test_step_level_groups_sum_to_zero(params, norm, rule):
    """Within each sibling group the (unpruned) advantages sum to zero, whatever the normalisation."""
    _, trees, uids, rewards, mask = make(params)
    table = node_table.build(uids, mask)
    adv, _, _ = step_level_advantages(table, rewards.sum(-1), AdvantageOptions(norm=norm, value_rule=rule))
    child = table.parent >= 0
    sums = torch.zeros(table.num_nodes, dtype=torch.float64).index_add_(0, table.parent[child], adv[child])
    assert sums.abs().max() < 1e-9


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from(["recursive_mean", "leaf_mean"]))
def test_vectorised_values_match_reference_tree(params, rule):
    _, trees, uids, rewards, mask = make(params)
    table = node_table.build(uids, mask)
    v = table.values(rewards.sum(-1), rule)
    for t in trees:
        t.compute_values(rule)
    # the table reads the rewards as verl stores them (float32 token rewards, summed per row), the
    # reference tree its float64 leaf rewards: a value near 0 carries float32's absolute error
    # (about 1e-7 of rewards of order 1), not a relative one
    ref = [l.value for t in trees for l in t.leaves()]  # rows are in the same leaf order
    assert v[table.leaf].tolist() == pytest.approx(ref, rel=1e-6, abs=1e-6)
    roots = [t.root.value for t in trees]
    root_of_row = table.row_root.tolist()
    first_row = [root_of_row.index(r) for r in sorted(set(root_of_row))]
    assert [v[root_of_row[i]].item() for i in first_row] == pytest.approx(roots, rel=1e-6, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(batches)
def test_treepo_tokens_are_whitened(params):
    _, _, uids, rewards, mask = make(params)
    adv = call("treepo", {}, uids, rewards, mask)
    vals = adv[mask.bool()]
    if vals.numel() >= 2 and vals.abs().max() > 0:
        assert abs(vals.mean().item()) < 1e-4
        assert abs(vals.std().item() - 1) < 1e-3


@settings(max_examples=40, deadline=None)
@given(batches)
def test_treepo_root_group_sums_to_zero_on_one_level(params):
    """One-level trees: A_i = R_i - mean over the prompt, so each prompt's A_i sum to zero."""
    seed, n, _, branch, kind, once, equal = params
    _, trees, uids, rewards, mask = make((seed, n, 1, branch, kind, once, equal))
    from treerpo.advantages.segment import treepo_row_advantages
    table = node_table.build(uids, mask)
    a = treepo_row_advantages(table, rewards.sum(-1), AdvantageOptions())
    sums = torch.zeros(table.num_nodes, dtype=torch.float64).index_add_(0, table.row_root, a)
    assert sums.abs().max() < 1e-9


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from([0.0, 0.1]), st.sampled_from(["recursive_mean", "leaf_mean"]))
def test_treerpo_batch_std_is_over_kept_groups_only(params, tau, rule):
    """norm=batch: a single child is pruned (A = 0) whatever tau, and the kept nodes' advantages
    have unbiased std 1: the batch std is taken over them alone."""
    _, _, uids, rewards, mask = make(params)
    table = node_table.build(uids, mask)
    opts = AdvantageOptions(norm="batch", tau=tau, value_rule=rule)
    adv, _, pruned = step_level_advantages(table, rewards.sum(-1), opts)
    child = table.parent >= 0
    single = child & (table.num_children[table.parent.clamp(min=0)] == 1)
    assert pruned[single].all() and (adv[single] == 0).all()
    kept = adv[child & ~pruned]
    if kept.numel() >= 2 and kept.abs().max() > 0:
        assert abs(kept.std().item() - 1) < 1e-3


def rows_crediting(trees, rng):
    """Rows with credit=once where each node is trained in a leaf row below it drawn by `rng`
    (`rows_from_trees(once=True)` always draws the first); returns the drawn rows too."""
    rows = [(t, l) for t in trees for l in t.leaves()]
    uids, rewards, mask = rows_from_trees(trees)
    below = {}
    for i, (_, leaf) in enumerate(rows):
        for n in leaf.lineage():
            below.setdefault(id(n), (n, []))[1].append(i)
    owner = {}
    mask.zero_()
    for key, (n, leaf_rows) in below.items():
        owner[key] = rng.choice(leaf_rows)
        mask[owner[key], n.start : n.end] = 1
    return uids, rewards, mask, below, owner


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.integers(0, 2**31))
def test_treepo_once_value_does_not_depend_on_which_row_trains_a_segment(params, seed2):
    """credit=once: a shared segment gets the same advantage whichever leaf row holds its trained
    copy; the trained tokens are whitened (mean 0, std 1)."""
    _, trees, _, _, _ = make(params)
    config = {"tree": {"advantage": {}, "rollout": {"credit": "once"}}}
    per_node = []
    for s in (params[0], seed2):
        uids, rewards, mask, below, owner = rows_crediting(trees, random.Random(s))
        adv = treepo_fn(rewards, mask, index=uids, config=config)[0]
        assert (adv[mask == 0] == 0).all()
        vals = adv[mask.bool()]
        if vals.abs().max() > 0:
            assert abs(vals.mean().item()) < 1e-4 and abs(vals.std().item() - 1) < 1e-3
        per_node.append({key: adv[owner[key], n.start : n.end] for key, (n, _) in below.items()})
    for key in per_node[0]:
        torch.testing.assert_close(per_node[0][key], per_node[1][key], atol=1e-5, rtol=1e-5)

"""TreeRPO / TreePO estimators: verl equivalence, hand-computed values, malformed input."""

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from tests.helpers import build_tree, rows_from_trees
from treerpo.tree import node_table
from treerpo.advantages.segment import treepo_row_advantages
from treerpo.advantages.step import step_level_advantages
from treerpo.tree.options import AdvantageOptions

treerpo_fn = get_adv_estimator_fn("treerpo")
treepo_fn = get_adv_estimator_fn("treepo")


def run_config(**adv):
    """A run config like verl's trainer holds, passed on as its `algorithm` node."""
    cfg = OmegaConf.create({"algorithm": {"adv_estimator": "x", "gamma": 1.0}, "tree": {"advantage": adv}})
    return cfg.algorithm


def one_level_batch(seed, n_prompts=5, leaves=6, T=12):
    g = torch.Generator().manual_seed(seed)
    trees = []
    for p in range(n_prompts):
        spec = [(int(torch.randint(1, T, (1,), generator=g)), float(torch.randint(0, 2, (1,), generator=g)))
                for _ in range(leaves)]
        trees.append(build_tree(f"prompt{p}", spec))
    uids, rewards, mask = rows_from_trees(trees, response_length=T)
    perm = torch.randperm(len(uids), generator=g)  # rows arrive reordered in verl
    return uids[perm.numpy()], rewards[perm], mask[perm]


def as_dataproto(uids, rewards, mask, prompt_uids=False):
    index = np.array([u.split("#")[0] for u in uids], dtype=object) if prompt_uids else uids
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards.clone(), "response_mask": mask.clone()},
        non_tensors={"uid": index},
    )


@pytest.mark.parametrize("seed", range(5))
def test_one_level_tree_is_grpo_through_compute_advantage(seed):
    uids, rewards, mask = one_level_batch(seed)
    ref = compute_advantage(as_dataproto(uids, rewards, mask, prompt_uids=True), "grpo")
    cfg = run_config(norm="group")
    ours = compute_advantage(as_dataproto(uids, rewards, mask), "treerpo", config=cfg)
    torch.testing.assert_close(ours.batch["advantages"], ref.batch["advantages"], atol=1e-6, rtol=0)
    assert ref.batch["advantages"].abs().sum() > 0  # the comparison is not between zeros


@pytest.mark.parametrize("seed", range(5))
def test_one_level_tree_is_rfpp_baseline_through_multi_trajectory_path(seed):
    uids, rewards, mask = one_level_batch(seed)
    keys = [f"{u.split('#')[0]}_{i}_0" for i, u in enumerate(uids)]
    ref = compute_advantage_for_multi_trajectories(
        as_dataproto(uids, rewards, mask, prompt_uids=True), keys, "reinforce_plus_plus_baseline"
    )
    ours = compute_advantage_for_multi_trajectories(
        as_dataproto(uids, rewards, mask), keys, "treepo", config=run_config()
    )
    torch.testing.assert_close(ours.batch["advantages"], ref.batch["advantages"], atol=1e-6, rtol=0)
    assert ref.batch["advantages"].abs().sum() > 0


def test_one_level_treerpo_continuous_rewards_tau0_is_grpo():
    g = torch.Generator().manual_seed(3)
    spec = [(3, float(torch.randn(1, generator=g))) for _ in range(7)]
    uids, rewards, mask = rows_from_trees([build_tree("p", spec)])
    ref = compute_advantage(as_dataproto(uids, rewards, mask, prompt_uids=True), "grpo")
    ours = compute_advantage(as_dataproto(uids, rewards, mask), "treerpo", config=run_config(norm="group", tau=0.0))
    torch.testing.assert_close(ours.batch["advantages"], ref.batch["advantages"], atol=1e-6, rtol=0)


# ---- an unbalanced three-level tree with early EOS, computed by hand -----------------------
#
#   root ── a (4 tok) ─┬─ a0 (3 tok, EOS)                r = 1
#          │           └─ a1 (2 tok) ─┬─ a1x (2 tok)      r = 0
#          │                          └─ a1y (3 tok)      r = 1
#          └─ b (5 tok) ─┬─ b0 (1 tok: EOS first token)   r = 0
#                        └─ b1 (2 tok) ─┬─ b1x (1 tok)    r = 0
#                                       └─ b1y (2 tok)    r = 0
SPEC = [
    (4, [(3, 1), (2, [(2, 0), (3, 1)])]),
    (5, [(1, 0), (2, [(1, 0), (2, 0)])]),
]
LEAVES = ["a0", "a1x", "a1y", "b0", "b1x", "b1y"]
LEAF_NODES = {"a0": ["a", "a0"], "a1x": ["a", "a1", "a1x"], "a1y": ["a", "a1", "a1y"],
              "b0": ["b", "b0"], "b1x": ["b", "b1", "b1x"], "b1y": ["b", "b1", "b1y"]}
SEG_LEN = {"a": 4, "a0": 3, "a1": 2, "a1x": 2, "a1y": 3, "b": 5, "b0": 1, "b1": 2, "b1x": 1, "b1y": 2}
T = 10
S2 = math.sqrt(2)


def hand_batch():
    uids, rewards, mask = rows_from_trees([build_tree("P", SPEC)], response_length=T)
    return uids, rewards, mask


def expected_tokens(node_adv):
    out = torch.zeros(len(LEAVES), T)
    for i, leaf in enumerate(LEAVES):
        pos = 0
        for n in LEAF_NODES[leaf]:
            out[i, pos : pos + SEG_LEN[n]] = node_adv.get(n, 0.0)
            pos += SEG_LEN[n]
    return out


# recursive mean: V(a1)=.5, V(a)=.75, V(b1)=0, V(b)=0. Groups {a,b}: dev +-.375, std .375*sqrt2;
# {a0,a1}: dev +-.25, std .25*sqrt2; {a1x,a1y}: dev -+.5, std .5*sqrt2; {b0,b1},{b1x,b1y}: std 0.
DEV = {"a": 0.375, "b": -0.375, "a0": 0.25, "a1": -0.25, "a1x": -0.5, "a1y": 0.5}
BATCH_STD = math.sqrt(2 * (0.375**2 + 0.25**2 + 0.5**2) / 5)
HAND = {
    "mean": DEV,
    "group": {k: math.copysign(1 / S2, v) for k, v in DEV.items()},  # every kept group is +-x
    "batch": {k: v / BATCH_STD for k, v in DEV.items()},
}


@pytest.mark.parametrize("norm", ["mean", "group", "batch"])
def test_treerpo_hand_computed(norm):
    uids, rewards, mask = hand_batch()
    adv, ret = treerpo_fn(rewards, mask, index=uids, config=run_config(norm=norm))
    torch.testing.assert_close(adv, expected_tokens(HAND[norm]), atol=1e-5, rtol=1e-5)
    assert torch.equal(adv, ret)


def test_treerpo_hand_computed_tau_prunes_group():
    # tau = 0.4 > std{a0,a1} = .354 and std{a,b} = .530 > 0.4: group {a0, a1} is pruned as well
    uids, rewards, mask = hand_batch()
    adv, _ = treerpo_fn(rewards, mask, index=uids, config=run_config(norm="mean", tau=0.4))
    exp = {k: v for k, v in DEV.items() if k not in ("a0", "a1")}
    torch.testing.assert_close(adv, expected_tokens(exp), atol=1e-6, rtol=0)


def test_treerpo_hand_computed_leaf_mean():
    # leaf mean: V(a) = 2/3 (three leaves 1,0,1), V(b) = 0: group {a,b} dev +-1/3; the rest as before
    uids, rewards, mask = hand_batch()
    adv, _ = treerpo_fn(rewards, mask, index=uids, config=run_config(norm="mean", value_rule="leaf_mean"))
    exp = dict(DEV, a=1 / 3, b=-1 / 3)
    torch.testing.assert_close(adv, expected_tokens(exp), atol=1e-6, rtol=0)


def test_treerpo_tau0_keeps_zero_std_groups_at_zero():
    uids, rewards, mask = hand_batch()
    adv, _ = treerpo_fn(rewards, mask, index=uids, config=run_config(norm="group", tau=0.0))
    torch.testing.assert_close(adv, expected_tokens(HAND["group"]), atol=1e-5, rtol=1e-5)


# TreePO, rewards a0=1 a1x=0 a1y=1 b0=0 b1x=0 b1y=0; leaf counts root 6, a 3, a1 2, b 3, b1 2;
# means root 1/3, a 2/3, a1 1/2, b 0, b1 0.
TREEPO_HAND = {
    "average": [(2 / 3 + 1 / 3) / 2, -(1 / 3 + 2 / 3 + 1 / 2) / 3, (2 / 3 + 1 / 3 + 1 / 2) / 3,
                -1 / 6, -1 / 9, -1 / 9],
    "group_size": [(6 * 2 / 3 + 3 * 1 / 3) / 9, -(6 / 3 + 3 * 2 / 3 + 2 / 2) / 11, (6 * 2 / 3 + 3 / 3 + 2 / 2) / 11,
                   -2 / 9, -2 / 11, -2 / 11],
    "drop": [0.5, -0.5, 0.5, -1 / 3, -1 / 3, -1 / 3],  # subgroups b and b1 (all 0) are left out
}


def whiten_by_hand(row_adv, mask):
    vals = (torch.tensor(row_adv, dtype=torch.float64)[:, None] * mask.double())[mask.bool()]
    mean, std = vals.mean(), vals.std()  # unbiased, as REINFORCE++ whitening
    return ((torch.tensor(row_adv, dtype=torch.float64)[:, None] - mean) / std * mask.double()).float()


@pytest.mark.parametrize("option", ["average", "group_size", "drop"])
def test_treepo_hand_computed(option):
    uids, rewards, mask = hand_batch()
    opts = {"average": {}, "group_size": {"aggregation": "group_size"},
            "drop": {"drop_zero_variance_subgroups": True}}[option]
    table = node_table.build(uids, mask)
    rows = treepo_row_advantages(table, rewards.sum(-1), AdvantageOptions(**opts))
    torch.testing.assert_close(rows, torch.tensor(TREEPO_HAND[option], dtype=torch.float64), atol=1e-9, rtol=0)
    adv, _ = treepo_fn(rewards, mask, index=uids, config=run_config(**opts))
    torch.testing.assert_close(adv, whiten_by_hand(TREEPO_HAND[option], mask), atol=1e-5, rtol=1e-5)


def test_node_values_match_reference_tree():
    tree = build_tree("P", SPEC)
    uids, rewards, mask = rows_from_trees([tree], response_length=T)
    table = node_table.build(uids, mask)
    for rule in ("recursive_mean", "leaf_mean"):
        tree.compute_values(rule)
        _, v, _ = step_level_advantages(table, rewards.sum(-1), AdvantageOptions(value_rule=rule))
        leaf_v = v[table.leaf]
        assert leaf_v.tolist() == [l.value for l in tree.leaves()]
        a_node = table.row_nodes[1, 0]  # node 'a' on row a1x
        assert v[a_node].item() == pytest.approx(tree.root.children[0].value)
        assert v[table.row_root[0]].item() == pytest.approx(tree.root.value)


# ---- options through the run config -----------------------------------------------------------
def test_unknown_option_is_an_error():
    uids, rewards, mask = hand_batch()
    with pytest.raises(ValueError, match="unknown tree.advantage option"):
        treerpo_fn(rewards, mask, index=uids, config=run_config(tua=0.1))
    with pytest.raises(ValueError, match="norm='grup'"):
        treerpo_fn(rewards, mask, index=uids, config=run_config(norm="grup"))


# ---- malformed input --------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [treerpo_fn, treepo_fn])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_is_an_error(fn, bad):
    uids, rewards, mask = hand_batch()
    rewards[2, 5] = bad
    with pytest.raises(ValueError, match=f"non-finite reward.*{uids[2]}"):
        fn(rewards, mask, index=uids, config=run_config())


@pytest.mark.parametrize("fn", [treerpo_fn, treepo_fn])
def test_malformed_topology_errors_name_the_uid(fn):
    uids, rewards, mask = hand_batch()
    cases = []
    u = uids.copy(); u[0] = "P-no-topology"; cases.append((u, "P-no-topology"))
    u = uids.copy(); u[1] = uids[2]; cases.append((u, "two rows for the leaf"))  # duplicate leaf
    u = uids.copy(); u[1] = "P#tree1#0.1#4.6"; cases.append((u, "cannot have children"))  # a1 as a leaf
    u = uids.copy(); u[2] = "P#tree1#0.1.1#5.6.9"; cases.append((u, "disagree on where it ends"))
    u = uids.copy(); u[0] = "P#tree1#0.0#4.11"; cases.append((u, "only 10 tokens"))
    for u, match in cases:
        with pytest.raises(ValueError, match=match):
            fn(rewards, mask, index=u, config=run_config())
    m = mask.clone(); m[0, 8] = 1  # a0's segments end at 7
    with pytest.raises(ValueError, match=f"{uids[0]}.*after its last segment"):
        fn(rewards, m, index=uids, config=run_config())
    u = uids.copy(); u[0] = "pad123"  # padding uid with live tokens
    with pytest.raises(ValueError, match="padding row"):
        fn(rewards, mask, index=u, config=run_config())


@pytest.mark.parametrize("fn", [treerpo_fn, treepo_fn])
@pytest.mark.parametrize("value", [2.0, 0.5, -1.0])
def test_a_mask_that_is_not_zero_or_one_is_an_error(fn, value):
    uids, rewards, mask = hand_batch()
    m = mask.clone()
    m[3, 1] = value  # it would scale row 3's advantages by `value`
    with pytest.raises(ValueError, match=f"uid '{uids[3]}': response_mask holds"):
        fn(rewards, m, index=uids, config=run_config())


@pytest.mark.parametrize("fn", [treerpo_fn, treepo_fn])
def test_two_trees_under_one_prompt_uid_are_an_error(fn):
    from tests.helpers import build_tree, rows_from_trees

    a = build_tree("p", [(2, [(2, 1.0), (2, 0.0)]), (2, [(2, 1.0), (2, 1.0)])])
    b = build_tree("p", [(2, [(2, 0.0), (2, 0.0)]), (2, [(2, 1.0), (2, 0.0)])])  # same shape, same uid
    uids, rewards, mask = rows_from_trees([a, b])
    with pytest.raises(ValueError, match="prompt uid 'p' has two rows for the leaf at path"):
        fn(rewards, mask, index=uids, config=run_config())


# ---- batches without real rows ----------------------------------------------
@pytest.mark.parametrize("credit", ["every_row", "once"])
@pytest.mark.parametrize("rows", [0, 1, 4])
@pytest.mark.parametrize("name", ["treerpo", "treepo"])
def test_batch_without_real_rows_gives_zeros(name, rows, credit):
    """Zero rows, or only verl's padding rows (one shared uid `pad<uuid hex>`, mask 0)."""
    fn = get_adv_estimator_fn(name)
    uids = np.array(["pad" + "0123456789abcdef" * 2] * rows, dtype=object)
    rewards = torch.rand(rows, 7)  # verl copies a real row's scores into its padding rows
    mask = torch.zeros(rows, 7, dtype=torch.long)
    adv, ret = fn(rewards, mask, index=uids, config=run_config_with(credit=credit))
    assert adv.shape == (rows, 7) and adv.dtype == rewards.dtype
    assert not adv.any() and torch.equal(adv, ret)


def test_node_table_without_real_rows_is_empty():
    uids = ["pad" + "f" * 32] * 3
    table = node_table.build(uids, torch.zeros(3, 5))
    assert table.num_nodes == 0 and not table.real.any()
    for rule in ("recursive_mean", "leaf_mean"):
        assert table.values(torch.ones(3), rule).shape == (0,)
    assert torch.equal(table.scatter_to_tokens(torch.zeros(0), 5), torch.zeros(3, 5))
    assert torch.equal(table.segment_tokens(torch.zeros(3, 5)), torch.zeros(3, 1, dtype=torch.float64))
    assert treepo_row_advantages(table, torch.ones(3), AdvantageOptions()).tolist() == [0, 0, 0]
    adv, _, pruned = step_level_advantages(table, torch.ones(3), AdvantageOptions())
    assert adv.numel() == 0 and pruned.numel() == 0


def test_error_messages_print_plain_ints():
    """Indices and counts in messages read as 5 and (0, 1), never np.int64(5)."""
    uids, rewards, mask = hand_batch()
    cases = []
    u = uids.copy(); u[2] = "P#tree1#0.1.1#5.6.9"
    cases.append((u, mask, "at path (0,) but disagree on where it ends (4 vs 5)"))
    u = uids.copy(); u[0] = "P#tree1#0.0#4.11"; cases.append((u, mask, "end at 11 but the response has only 10 tokens"))
    m = mask.clone(); m[0, 8] = 1; cases.append((uids, m, "which ends at 7"))
    cases.append((uids[:-1], mask, "5 uids for 6 rows"))
    for u, m, text in cases:
        with pytest.raises(ValueError) as err:
            node_table.build(u, m)
        assert text in str(err.value)
        assert "np." not in str(err.value) and "int64" not in str(err.value)


# ---- TreeRPO `batch`: single-child groups stay out of the batch std ----------
#
#   root ── c (2 tok) ── c1 (3 tok) ─┬─ x (2 tok)   r = 1
#                                   └─ y (2 tok)   r = 0
# {c} and {c1} are groups of one: nothing to compare, A = 0, and not counted in the batch std.
# The only kept group {x, y} has deviations +-0.5, unbiased std sqrt(0.5): A(x) = -A(y) = 1/sqrt2.
CHAIN_SPEC = [(2, [(3, [(2, 1), (2, 0)])])]


@pytest.mark.parametrize("tau", [0.0, 0.1])
def test_treerpo_batch_norm_leaves_single_child_groups_out(tau):
    uids, rewards, mask = rows_from_trees([build_tree("C", CHAIN_SPEC)])
    adv, _ = treerpo_fn(rewards, mask, index=uids, config=run_config(norm="batch", tau=tau))
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    exp = torch.tensor([[0, 0, 0, 0, 0, a, a], [0, 0, 0, 0, 0, -a, -a]])
    torch.testing.assert_close(adv, exp, atol=1e-6, rtol=0)
    table = node_table.build(uids, mask)
    _, _, pruned = step_level_advantages(table, rewards.sum(-1), AdvantageOptions(norm="batch", tau=tau))
    single = (table.parent >= 0) & (table.num_children[table.parent.clamp(min=0)] == 1)
    assert pruned[single].all() and single.sum() == 2


def test_treerpo_batch_norm_tau0_counts_agreeing_groups_of_two_or_more():
    """tau = 0 prunes nothing that was compared: {b0, b1} and {b1x, b1y} (values agree, deviation 0)
    enter the batch std, as agreeing prompts enter REINFORCE++'s whitening: 10 nodes, not 6."""
    uids, rewards, mask = hand_batch()
    adv, _ = treerpo_fn(rewards, mask, index=uids, config=run_config(norm="batch", tau=0.0))
    std = math.sqrt(2 * (0.375**2 + 0.25**2 + 0.5**2) / 9)
    torch.testing.assert_close(adv, expected_tokens({k: v / std for k, v in DEV.items()}), atol=1e-5, rtol=1e-5)


# ---- TreePO with credit=once: a shared segment gets the mean A_i below it ---
def run_config_with(credit="every_row", **adv):
    """As `run_config`, with `tree.rollout.credit` set too."""
    cfg = OmegaConf.create({"algorithm": {"adv_estimator": "x", "gamma": 1.0},
                            "tree": {"advantage": adv, "rollout": {"credit": credit}}})
    return cfg.algorithm


def test_treepo_once_hand_computed():
    # rows a0 a1x a1y b0 b1x b1y with A_i = TREEPO_HAND["average"] = .5 -.5 .5 -1/6 -1/9 -1/9.
    # mean A_i below: a (a0, a1x, a1y) 1/6; a1 (a1x, a1y) 0; b (b0, b1x, b1y) -7/54; b1 -1/9.
    # once (depth-first): a and a0 train in row a0, a1 and a1x in row a1x, b and b0 in row b0, ...
    uids, rewards, mask = rows_from_trees([build_tree("P", SPEC)], response_length=T, once=True)
    a_i = dict(zip(LEAVES, TREEPO_HAND["average"]))
    node = dict(a_i, a=1 / 6, a1=0.0, b=-7 / 54, b1=-1 / 9)
    raw = expected_tokens(node).double() * mask.double()
    vals = raw[mask.bool()]
    exp = ((raw - vals.mean()) / vals.std() * mask.double()).float()  # token-weighted, unbiased
    adv, ret = treepo_fn(rewards, mask, index=uids, config=run_config_with(credit="once"))
    torch.testing.assert_close(adv, exp, atol=1e-5, rtol=1e-5)
    assert torch.equal(adv, ret)
    # segment a (row a0, tokens 0-3) is no longer row a0's A_i = .5 but the mean 1/6 of its leaves
    assert adv[0, 0] < adv[0, 4]


def test_treepo_once_equals_every_row_without_shared_segments():
    uids, rewards, mask = one_level_batch(0)
    once, _ = treepo_fn(rewards, mask, index=uids, config=run_config_with(credit="once"))
    every, _ = treepo_fn(rewards, mask, index=uids, config=run_config_with(credit="every_row"))
    torch.testing.assert_close(once, every, atol=1e-6, rtol=0)
    assert every.abs().sum() > 0


def test_treepo_node_advantages_are_leaf_means():
    from treerpo.advantages.segment import treepo_node_advantages

    uids, rewards, mask = hand_batch()
    table = node_table.build(uids, mask)
    row_adv = torch.tensor(TREEPO_HAND["average"], dtype=torch.float64)
    node = treepo_node_advantages(table, row_adv)
    a, a1, b = table.row_nodes[1, 0], table.row_nodes[1, 1], table.row_nodes[3, 0]
    assert node[a].item() == pytest.approx(1 / 6) and node[a1].item() == pytest.approx(0)
    assert node[b].item() == pytest.approx(-7 / 54)
    assert node[table.leaf].tolist() == pytest.approx(row_adv.tolist())

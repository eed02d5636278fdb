"""Tree-aware micro-batches (treerpo/training/microbatch.py) and their use in the packed engine."""

import functools
import random

import pytest
import torch

from treerpo.training import microbatch, packing
from treerpo.training.tree_batch import grow_tree, verl_rows

VOCAB = 259


def trees_batch(seed=0, n=6, p_stop=0.3, pad_rows=0, branching=(3, 2, 2), seg=4):
    rng = random.Random(seed)
    trees = [grow_tree(rng, f"t{i}", rng.randint(3, 9), list(branching), seg, VOCAB, p_stop=p_stop) for i in range(n)]
    return verl_rows(trees, pad_rows=pad_rows)


def prompt_lengths(rows):
    p = rows.input_ids.shape[1] - rows.response_length
    return rows.attention_mask[:, :p].sum(-1).tolist()


def packed_tokens(rows, idx) -> int:
    """What packing.pack makes of these rows: the ground truth of a unit's cost."""
    pk = packing.pack(rows.input_ids[idx], rows.attention_mask[idx], rows.position_ids[idx],
                      [rows.uids[i] for i in idx], rows.response_length)
    return int(pk.valid.sum())


def tree_of(uid):
    return uid.split("#")[0]


@pytest.mark.parametrize("seed", range(5))
def test_a_tree_that_fits_is_never_split(seed):
    rows = trees_batch(seed, pad_rows=2)
    items = microbatch.units(rows.uids, prompt_lengths(rows), max_tokens=10_000)
    real = [u for u in items if u.tree is not None]
    assert len(real) == 6 and all(u.repeated == 0 for u in real)
    for u in real:
        assert {tree_of(rows.uids[r]) for r in u.rows} == {u.tree}
        assert u.tokens == packed_tokens(rows, u.rows)
    budget = max(u.tokens for u in real)  # every tree fits, several share a micro-batch
    groups = microbatch.plan(items, budget)
    assert sorted(r for g in groups for r in g) == list(range(len(rows.uids)))
    for g in groups:
        assert packed_tokens(rows, [r for r in g if not rows.uids[r].startswith("pad")]) <= budget
        for other in groups:
            if other is not g:  # no tree in two micro-batches
                assert not {tree_of(rows.uids[r]) for r in g} & {tree_of(rows.uids[r]) for r in other} - {""}


@pytest.mark.parametrize("seed", range(5))
def test_a_tree_over_budget_is_split_at_subtree_boundaries(seed):
    rows = trees_batch(seed, n=1, p_stop=0.2, branching=(3, 3, 2), seg=5)
    whole = microbatch.units(rows.uids, prompt_lengths(rows), 10_000)[0]
    budget = whole.tokens // 2
    items = microbatch.units(rows.uids, prompt_lengths(rows), budget)
    assert len(items) >= 2
    assert sorted(r for u in items for r in u.rows) == list(range(len(rows.uids)))  # every row once
    for u in items:
        assert u.tokens <= budget and u.tokens == packed_tokens(rows, u.rows)
        # a piece is whole subtrees: every row under one of its nodes is in it
        for path in u.paths:
            under = [r for r, uid in enumerate(rows.uids)
                     if tuple(int(x) for x in uid.split("#")[2].split("."))[: len(path)] == path]
            assert set(under) <= set(u.rows)
    # what splitting costs: each piece computes the prompt and its ancestors again
    p = prompt_lengths(rows)[0]
    assert all(u.repeated >= p for u in items)
    ancestors_once = whole.tokens - sum(u.tokens - u.repeated for u in items)  # prompt + nodes above the pieces
    assert ancestors_once >= p and sum(u.tokens for u in items) - whole.tokens == sum(u.repeated for u in items) - ancestors_once


def test_a_path_over_budget_is_an_error():
    rows = trees_batch(0, n=1, p_stop=0.0, branching=(2, 2), seg=8)
    with pytest.raises(ValueError, match="over the micro-batch budget of 10"):
        microbatch.units(rows.uids, prompt_lengths(rows), max_tokens=10)


def test_ranks_are_balanced_in_packed_tokens_at_dp_8():
    rows = trees_batch(1, n=40, p_stop=0.4)  # early EOS: trees of 1 to 12 leaves
    items = microbatch.units(rows.uids, prompt_lengths(rows), 10_000)
    per_rank = microbatch.ranks(items, 8)
    loads = [packed_tokens(rows, r) for r in per_rank]
    assert sorted(r for g in per_rank for r in g) == list(range(len(rows.uids)))
    assert max(loads) - min(loads) <= max(u.tokens for u in items)  # the longest-processing-time bound
    rank_of = {}
    for k, g in enumerate(per_rank):  # whole trees per rank: every tree on exactly one
        for r in g:
            rank_of.setdefault(tree_of(rows.uids[r]), set()).add(k)
    assert len(rank_of) == 40 and all(len(ks) == 1 for ks in rank_of.values())


@pytest.mark.parametrize("credit", ["every_row", "once"])
def test_pieces_of_a_split_tree_train_exactly_as_unpacked(credit):
    """Forward and backward of each piece packed (its ancestors recomputed) sum to the unpacked
    batch's: log-probs within 1e-5, gradients within 1e-4 relative."""
    from treerpo.tiny.model import build_model
    from treerpo.training import tree_attention

    rows = verl_rows([grow_tree(random.Random(3), "big", 6, [3, 2, 2], 4, VOCAB, p_stop=0.3)], credit=credit)
    items = microbatch.units(rows.uids, prompt_lengths(rows), 30)
    assert len(items) >= 3
    model = build_model(VOCAB, seed=0).float()
    p = rows.input_ids.shape[1] - rows.response_length
    mask = rows.response_mask.float()
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))

    def loss_of(lp, m, w):
        return (lp * m * w).sum() / mask.sum()

    model.set_attn_implementation("sdpa")
    model.zero_grad()
    logits = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask, position_ids=rows.position_ids).logits
    lp_u = torch.log_softmax(logits[:, p - 1: -1].float(), -1).gather(-1, rows.input_ids[:, p:, None])[..., 0]
    loss_of(lp_u, mask, weights).backward()
    g_u = {n: q.grad.clone() for n, q in model.named_parameters()}
    lp_u = lp_u.detach()

    tree_attention.use(model)
    model.zero_grad()
    for u in items:
        idx = u.rows
        pk = packing.pack(rows.input_ids[idx], rows.attention_mask[idx], rows.position_ids[idx],
                          [rows.uids[i] for i in idx], rows.response_length)
        out = model(input_ids=pk.input_ids, position_ids=pk.position_ids, tree_plan=tree_attention.plan(pk)).logits
        lp, _ = packing.response_logprobs(out, pk, rows.input_ids[idx], with_entropy=False)
        assert (lp - lp_u[idx])[mask[idx].bool()].abs().max() <= 1e-5
        loss_of(lp, mask[idx], weights[idx]).backward()
    for name, gu in g_u.items():
        assert gu.norm() > 0 and (gu - dict(model.named_parameters())[name].grad).norm() / gu.norm() <= 1e-4, name


def test_engine_micro_batches_keep_trees_whole_and_restore_order():
    """The packed engine's replacement of verl's prepare_micro_batches on a verl-shaped batch."""
    from tests.test_packed_engine import micro_batch
    from verl_ext import packed_engine

    data = micro_batch("every_row")
    uids = list(data["uid"])
    sizes = {u.tree: u.tokens for u in microbatch.units(uids, data["prompts"].offsets().diff().tolist(), 10_000)
             if u.tree is not None}
    budget = max(sizes.values())  # each tree fits alone, not both together
    assert sum(sizes.values()) > budget
    batches, indices = packed_engine.tree_micro_batches(data, budget)
    assert len(indices) == 2 and sorted(i for g in indices for i in g) == list(range(len(uids)))
    for g, mb in zip(indices, batches):
        assert list(mb["uid"]) == [uids[i] for i in g]
        assert len({tree_of(uids[i]) for i in g if not uids[i].startswith("pad")}) == 1  # one whole tree each


def test_engine_runs_verls_loop_on_tree_micro_batches(monkeypatch):
    """TreePackedEngine.forward_backward_batch: verl's loop, the planner's micro-batches, verl's
    loss aggregation; outputs back in the batch's row order and equal to one unsplit pass."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import no_padding_2_padding

    from tests.test_packed_engine import actor_config, engine, micro_batch
    from treerpo.tiny.model import build_model
    from verl_ext import packed_engine

    cls = packed_engine._engine_class()
    loss_fn = functools.partial(ppo_loss, actor_config())
    results = {}
    for budget in (10_000, 40):  # one micro-batch; then the two trees apart, the first split
        model = build_model(VOCAB, seed=0).float()
        model.set_attn_implementation("sdpa")
        eng = engine(cls, model)
        eng._gradient_sync_context = lambda is_last_micro_batch: __import__("contextlib").nullcontext()
        eng.get_data_parallel_size = lambda: 1
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda *a, **k: None)  # one process, no group
        data = micro_batch("every_row")
        data["loss_mask"] = data["response_mask"]
        tu.assign_non_tensor(data, max_response_len=data["response_mask"].shape[1])  # dense fields here
        tu.assign_non_tensor(data, max_token_len_per_gpu=budget, use_dynamic_bsz=True, pad_mode="no_padding")
        out = eng.forward_backward_batch(data, loss_fn, forward_only=False)
        grads = {n: q.grad.clone() for n, q in model.named_parameters()}
        with torch.no_grad():  # old_log_prob's pass: outputs come back in the batch's row order
            infer = eng.forward_backward_batch(data, None, forward_only=True)
        lp = no_padding_2_padding(infer["model_output"]["log_probs"], data)
        results[budget] = (len(out["loss"]), grads, lp)
    (n1, g1, lp1), (n2, g2, lp2) = results[10_000], results[40]
    assert n1 == 1 and n2 >= 3
    for name, g in g1.items():
        assert (g - g2[name]).norm() / g.norm() <= 1e-4, name
    keep = data["response_mask"].bool()
    assert (lp1 - lp2)[keep].abs().max() <= 1e-5

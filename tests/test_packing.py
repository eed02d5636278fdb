"""Tree packing: layout by hand, and exactness of the packed forward/backward on a tiny Qwen2 (CPU, float32)."""

import random

import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty
from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits

from treerpo.training import packing, tree_attention
from treerpo.tree.tree import Tree
from treerpo.tiny.model import build_model
from treerpo.training.tree_batch import grow_tree, verl_rows

VOCAB = 259

# (name, per tree: (prompt length, branching, segment length, early-stop probability), padding rows)
SHAPES = [
    ("treerpo_early_leaves", [(5, [3, 2, 2], 4, 0.4), (9, [2, 3, 2], 4, 0.4)], 0),
    ("single_child_chains", [(4, [1, 1, 1], 3, 0.0), (6, [2, 1, 1], 3, 0.0)], 0),
    ("one_leaf_trees", [(3, [1], 6, 0.0), (7, [1], 2, 0.0), (5, [3], 4, 0.0)], 0),
    ("padding_rows", [(6, [2, 2], 5, 0.2), (4, [3, 1], 5, 0.0)], 2),
    ("mixed_prompts", [(2, [2, 2, 2], 3, 0.3), (11, [4], 9, 0.0), (6, [1, 3], 2, 0.5)], 1),
]


def batch(shape, seed=0, credit="every_row"):
    rng = random.Random(seed)
    trees = [grow_tree(rng, f"prompt{i}", pl, br, seg, VOCAB, p_stop=ps) for i, (pl, br, seg, ps) in enumerate(shape[1])]
    return verl_rows(trees, credit=credit, pad_rows=shape[2])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(VOCAB, seed=0, layers=2).float()  # sdpa: takes a 4-D boolean mask as is


def unpacked(model, rows):
    """verl's computation: the padded rows, log-probs of each response token from its predecessor."""
    p = rows.input_ids.shape[1] - rows.response_length
    logits = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask, position_ids=rows.position_ids).logits
    logits = logits[:, p - 1: -1]
    return logprobs_from_logits(logits, rows.input_ids[:, p:]), entropy_from_logits(logits)


def packed(model, rows, attention="dense"):
    """dense: sdpa with the (L, L) tree mask; segments: one attention block per node."""
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    if attention == "dense":
        model.set_attn_implementation("sdpa")
        extra = {"attention_mask": pk.attention}
    else:
        tree_attention.register()
        model.set_attn_implementation(tree_attention.NAME)
        extra = {"tree_plan": tree_attention.plan(pk, attention)}
    try:
        logits = model(input_ids=pk.input_ids, position_ids=pk.position_ids, **extra).logits
    finally:
        model.set_attn_implementation("sdpa")
    return packing.response_logprobs(logits, pk, rows.input_ids)


def packed_segments(model, rows):
    return packed(model, rows, "segments")


def real_tokens(rows):
    keep = rows.attention_mask[:, -rows.response_length:].bool()
    keep[[u.startswith("pad") for u in rows.uids]] = False
    return keep


# ---- layout, by hand ----------------------------------------------------------------------

def hand_tree():
    """prompt [10, 11]; root -> A [20, 21] -> {B [30], C [40, 41]}; root -> D [50]."""
    t = Tree([10, 11], "q")
    a = t.add_child(t.root, [20, 21])
    t.add_child(a, [30])
    t.add_child(a, [40, 41])
    t.add_child(t.root, [50])
    return t


def test_layout_by_hand():
    rows = verl_rows([hand_tree()], prompt_width=3)
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    assert pk.input_ids.tolist() == [[10, 11, 20, 21, 30, 40, 41, 50]]
    assert pk.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 5, 2]]  # C and B both start at 4, D at 2
    allowed = pk.attention[0, 0]
    assert allowed[5].tolist() == [True, True, True, True, False, True, False, False]  # C0 sees prompt, A, itself
    assert allowed[7].tolist() == [True, True, False, False, False, False, False, True]  # D sees prompt, itself
    # row C = prompt, A, C: its first response token is predicted at the prompt's last (packed 1),
    # C's first token at A's last (packed 3, the branch point B also reads)
    assert pk.row_index[1].tolist() == [-1, 0, 1, 2, 3, 5, 6]
    assert pk.row_index[0].tolist() == [-1, 0, 1, 2, 3, 4, -1]
    assert packing.token_counts(rows.attention_mask, pk) == {"unpacked": 14, "packed": 8, "ratio": 8 / 14}


def test_to_rows_and_to_packed_invert_on_shared_values():
    rows = batch(SHAPES[0])
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    assert torch.equal(packing.to_packed(rows.input_ids, pk), pk.input_ids)
    back = packing.to_rows(pk.input_ids, pk)
    assert torch.equal(back, rows.input_ids * rows.attention_mask)


def test_contradicting_uids_raise():
    rows = verl_rows([hand_tree()])
    rows.input_ids[1, -3] += 1  # row C's copy of shared node A differs from row B's
    with pytest.raises(ValueError, match="token ids differ"):
        packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    rows = verl_rows([hand_tree()])
    rows.attention_mask[0, -1] = 1  # one response token more than the uid's segments cover
    with pytest.raises(ValueError, match="ends at"):
        packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)


def test_segment_plan_by_hand():
    rows = verl_rows([hand_tree()], prompt_width=3)
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    plan = tree_attention.segment_plan(pk)
    # blocks: prompt [0, 1], A [2, 3], B [4], C [5, 6], D [7]; keys: the path, then the node
    assert plan.q_index.tolist() == [[0, 1], [2, 3], [4, -1], [5, 6], [7, -1]]
    assert plan.k_index.tolist() == [[0, 1, -1, -1, -1, -1], [0, 1, 2, 3, -1, -1], [0, 1, 2, 3, 4, -1],
                                     [0, 1, 2, 3, 5, 6], [0, 1, 7, -1, -1, -1]]
    assert plan.mask[3, 0].tolist() == [[True, True, True, True, True, False], [True] * 6]
    # the dense mask, rebuilt from the blocks, is the packed tree mask
    dense = torch.zeros(8, 8, dtype=torch.bool)
    for q, k, m in zip(plan.q_index, plan.k_index, plan.mask[:, 0]):
        for i, qi in enumerate(q.tolist()):
            if qi >= 0:
                dense[qi, [kj for j, kj in enumerate(k.tolist()) if kj >= 0 and m[i, j]]] = True
    assert torch.equal(dense, pk.attention[0, 0])


# ---- exactness on the tiny model ----------------------------------------------------------

@pytest.mark.parametrize("attention", ["dense", "segments", "flex"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_packed_logprobs_and_entropies_equal_unpacked(model, shape, attention):
    rows = batch(shape)
    with torch.no_grad():
        lp_u, ent_u = unpacked(model, rows)
        lp_p, ent_p = packed(model, rows, attention)
    keep = real_tokens(rows)
    assert (lp_u - lp_p)[keep].abs().max() <= 1e-5
    assert (ent_u - ent_p)[keep].abs().max() <= 1e-5
    assert (lp_p[~keep] == 0).all() and (ent_p[~keep] == 0).all()


def test_flex_attention_has_no_backward_on_cpu(model):
    """FlexAttention's forward runs on CPU (torch 2.13), its backward only on an accelerator; the
    kernel "auto" is the per-node blocks (`tree_attention.plan`)."""
    rows = batch(SHAPES[0])
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    assert isinstance(tree_attention.plan(pk, "auto", "cpu"), tree_attention.SegmentPlan)
    tree_attention.register()
    model.set_attn_implementation(tree_attention.NAME)
    try:
        with pytest.raises(NotImplementedError, match="backward on CPU"):
            model(input_ids=pk.input_ids, position_ids=pk.position_ids, tree_plan=tree_attention.plan(pk, "flex")).logits
    finally:
        model.set_attn_implementation("sdpa")


def test_positions_matter(model):
    """The check above can fail: with positions 0..L-1 along the packed sequence (what a plain
    packed forward would use) the log-probs after the first branch differ."""
    rows = batch(SHAPES[0])
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    naive = torch.arange(pk.input_ids.shape[1]).expand_as(pk.input_ids)
    with torch.no_grad():
        lp_u, _ = unpacked(model, rows)
        logits = model(input_ids=pk.input_ids, attention_mask=pk.attention, position_ids=naive).logits
        lp_n, _ = packing.response_logprobs(logits, pk, rows.input_ids)
    assert (lp_u - lp_n)[real_tokens(rows)].abs().max() > 1e-3


def policy_loss(log_prob, old_log_prob, ref_log_prob, advantages, mask):
    """verl's PPO actor loss: vanilla clipped policy loss + low_var_kl KL loss, token-mean."""
    config = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28,
                               "clip_ratio_c": 3.0, "global_batch_info": {}})
    pg, _ = get_policy_loss_fn("vanilla")(old_log_prob, log_prob, advantages, mask, "token-mean", config)
    kl = agg_loss(kl_penalty(log_prob, ref_log_prob, "low_var_kl"), mask, "token-mean")
    return pg + 0.1 * kl


@pytest.mark.parametrize("forward", [packed, packed_segments], ids=["dense", "segments"])
@pytest.mark.parametrize("credit", ["every_row", "once"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3], SHAPES[4]], ids=[SHAPES[i][0] for i in (0, 3, 4)])
def test_policy_loss_gradients_equal_unpacked(model, shape, credit, forward):
    rows = batch(shape, seed=1, credit=credit)
    mask = rows.response_mask.float()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base, _ = unpacked(model, rows)
    old = (base + 0.3 * torch.randn(base.shape, generator=g)) * mask  # ratios inside and outside the clip
    ref = (base + 0.3 * torch.randn(base.shape, generator=g)) * mask
    adv = torch.randn(base.shape[0], 1, generator=g).expand_as(base) * mask

    grads, losses = [], []
    for fn in (unpacked, forward):
        model.zero_grad()
        loss = policy_loss(fn(model, rows)[0], old, ref, adv, mask)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert abs(losses[0] - losses[1]) <= 1e-5 * max(1.0, abs(losses[0]))
    for name, g_u in grads[0].items():
        g_p = grads[1][name]
        assert g_u.norm() > 0, name
        assert (g_u - g_p).norm() / g_u.norm() <= 1e-4, name


def saved_bytes(fn, logits) -> int:
    """Bytes autograd keeps for backward while `fn` runs, apart from the logits' own storage."""
    total = [0]
    own = logits.untyped_storage().data_ptr()

    def pack_hook(t):
        if t.untyped_storage().data_ptr() != own:
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        out = fn()
    sum(o.sum() for o in out if o is not None).backward()
    return total[0]


def test_log_prob_path_keeps_no_vocabulary_sized_tensor():
    """A large-vocabulary pack (S L = 1536 positions, V = 32768: 201 MB of float32 logits): the
    log-prob and entropy path keeps O(S L) for backward, far below one float32 copy of the logits
    (the path that took logsumexp and softmax over the whole pack kept three)."""
    rng = random.Random(0)
    vocab = 32768
    trees = [grow_tree(rng, f"p{i}", 64, [4, 4], 32, vocab) for i in range(3)]
    rows = verl_rows(trees)
    pk = packing.pack(rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length)
    s, length = pk.input_ids.shape
    logits = torch.randn(s, length, vocab, requires_grad=True)
    full = logits.numel() * 4
    kept = saved_bytes(lambda: packing.response_logprobs(logits, pk, rows.input_ids, chunk_rows=256), logits)
    assert kept <= 64 * (s * length + rows.input_ids.numel()), (kept, full)  # the stated bound: O(S L + B T)
    assert kept < full / 100

    def whole_pack():  # log-softmax and softmax over every position at once
        lse = torch.logsumexp(logits.float(), -1)
        ent = lse - (torch.softmax(logits.float(), -1) * logits.float()).sum(-1)
        return lse, ent

    assert saved_bytes(whole_pack, logits) >= full  # what chunking avoids
    # and the values agree with the unchunked computation
    lp, ent = packing.response_logprobs(logits.detach(), pk, rows.input_ids, chunk_rows=256)
    lp_all, ent_all = packing.response_logprobs(logits.detach(), pk, rows.input_ids, chunk_rows=s * length)
    assert torch.allclose(lp, lp_all) and torch.allclose(ent, ent_all)


def test_pack_cache_keeps_block_indices_not_the_mask():
    """The packed engine caches a micro-batch's pack and plan on the CPU for the step's passes: the
    plan holds block indices there, and its N x Q x K attention mask is built only on the copy a
    forward uses, the same mask every time."""
    from verl_ext import packed_engine

    rows = batch(SHAPES[0])
    packed_engine._CACHE = None
    args = (rows.input_ids, rows.attention_mask, rows.position_ids, rows.uids, rows.response_length, "segments")
    _, _, used = packed_engine._packed(*args)
    cached = next(iter(packed_engine._CACHE.values()))[1]
    assert used.mask.shape[0] == cached.q_index.shape[0] and cached._mask is None
    _, _, again = packed_engine._packed(*args)
    assert len(packed_engine._CACHE) == 1 and again is not used and torch.equal(again.mask, used.mask)
    assert cached._mask is None

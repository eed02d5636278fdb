"""Attention over packed trees, one block per node: each segment's queries against its path only.

A dense (L, L) tree mask (`PackedBatch.attention`) is exact but computes every pair of the
packed sequence, most of them masked: for TreeRPO N=4 D=3 a packed tree holds 84 segments and
a token sees at most P + 3 L of the P + 84 L tokens. Here each node n (the prompt is node 0) is
one attention block:

    queries  the node's own tokens                      (at most L, or P for the prompt)
    keys     its ancestors' tokens, then its own         (P + depth(n) L at most)
    mask     key j visible to query i  <=>  packed(j) <= packed(i)   (ancestors come first)

so the work is sum_n |n| x |path(n)|, what the unpacked rows spend on attention divided by
the rows sharing each node. All blocks are padded to one (N, Q, K) batch and run by one
`torch.nn.functional.scaled_dot_product_attention` call (its mem-efficient kernel on GPU, the
math one on CPU).

Use with transformers: `register()` once, then `model.set_attn_implementation(NAME)` and call the
model with `tree_plan=segment_plan(packed)` and no attention mask; transformers hands the extra
keyword to each attention layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from treerpo.training.packing import PackedBatch

NAME = "treerpo_tree_segments"


@dataclass
class SegmentPlan:
    q_index: torch.Tensor  # (N, Q) flat packed index (s * L + i) of each block's queries, -1 = pad
    k_index: torch.Tensor  # (N, K) flat packed index of each block's keys, -1 = pad
    mask: torch.Tensor  # (N, 1, Q, K) bool, True = attend

    def to(self, device) -> "SegmentPlan":
        return SegmentPlan(self.q_index.to(device), self.k_index.to(device), self.mask.to(device))


def segment_plan(packed: PackedBatch) -> SegmentPlan:
    """One block per node of every packed tree (see the module docstring)."""
    length = packed.input_ids.shape[1]
    blocks = []  # (queries, keys) as flat packed indices
    for s, segments in enumerate(packed.segments):
        spans = {key: (a, b) for key, a, b in segments}
        for key, a, b in segments:
            path = [spans[key[:k]] for k in range(len(key) + 1)]  # () is the prompt
            keys = torch.cat([torch.arange(x, y) for x, y in path])
            blocks.append((s * length + torch.arange(a, b), s * length + keys))
    n = len(blocks)
    q_len = max(len(q) for q, _ in blocks)
    k_len = max(len(k) for _, k in blocks)
    q_index = torch.full((n, q_len), -1, dtype=torch.long)
    k_index = torch.full((n, k_len), -1, dtype=torch.long)
    for i, (q, k) in enumerate(blocks):
        q_index[i, : len(q)], k_index[i, : len(k)] = q, k
    mask = (k_index[:, None, :] <= q_index[:, :, None]) & (k_index[:, None, :] >= 0)
    mask[:, :, 0] |= q_index < 0  # padded queries see one key: no empty softmax rows (no NaN)
    return SegmentPlan(q_index, k_index, mask[:, None])


def tree_segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                           tree_plan: SegmentPlan | None = None, **kwargs):
    """transformers attention function: query (S, H, L, d), key/value (S, Hkv, L, d) ->
    (output (S, L, H, d), None). Packed padding tokens get output 0 (no row reads them)."""
    if tree_plan is None:
        raise ValueError(f"attention {NAME!r} needs the model called with tree_plan=segment_plan(packed)")
    s, h, length, d = query.shape
    flat = lambda x: x.transpose(1, 2).reshape(s * length, x.shape[1], d)  # noqa: E731  (S L, heads, d)
    q, k, v = flat(query), flat(key), flat(value)
    qi, ki = tree_plan.q_index.clamp(min=0), tree_plan.k_index.clamp(min=0)
    out = F.scaled_dot_product_attention(
        q[qi].transpose(1, 2), k[ki].transpose(1, 2), v[ki].transpose(1, 2),
        attn_mask=tree_plan.mask, scale=scaling, enable_gqa=h != key.shape[1],
    )  # (N, H, Q, d)
    real = tree_plan.q_index >= 0
    packed = q.new_zeros(s * length, h, d).index_copy(0, tree_plan.q_index[real], out.transpose(1, 2)[real])
    return packed.view(s, length, h, d), None


@contextmanager
def switched(model):
    """Run `model` with NAME as its attention implementation inside the block, its own after."""
    register()
    before = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


def register() -> None:
    """Make NAME an attention implementation transformers models can be switched to."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, tree_segment_attention)

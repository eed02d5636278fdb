"""Attention over packed trees: each token sees its ancestors only, computed without the masked pairs.

A dense (L, L) tree mask (`PackedBatch.attention`) is exact but computes every pair of the packed
sequence, most of them masked: for TreeRPO N=4 D=3 a packed tree holds 84 segments and a token
sees at most P + 3 L of the P + 84 L tokens. Two kernels skip the masked pairs:

  segments  one attention block per node n (the prompt is node 0):
                queries  the node's own tokens                   (at most L, or P for the prompt)
                keys     its ancestors' tokens, then its own      (P + depth(n) L at most)
                mask     key j visible to query i <=> packed(j) <= packed(i)  (ancestors come first)
            so the work is sum_n |n| x |path(n)|. All blocks are padded to one (N, Q, K) batch and
            run by one `scaled_dot_product_attention` call (its mem-efficient kernel on GPU, the
            math one on CPU). Forward and backward on every device.
  flex      torch's FlexAttention with a block mask built from the tree: mask_mod(q, k) =
            ancestor-or-self(node(k), node(q)) and k <= q. On CUDA it runs compiled
            (`torch.compile`), where blocks of 128 x 128 that hold no visible pair are skipped;
            uncompiled (CPU) torch materialises the whole score matrix and runs the forward
            only (no backward in torch 2.13): there it is an exactness check, not a kernel.

`plan(packed, kernel="auto")` builds the kernel's plan; "auto" takes segments on every device:
flex is chosen by name (`TREERPO_TREE_KERNEL=flex` for the packed engine) until the prepared
GPU check (benchmarks/gpu_check.sh) has timed it against segments.

With transformers, the plan travels as a keyword of the model call (`tree_plan=...`) down to every
attention layer. The registered attention implementation (`implementation(base)`, e.g.
"treerpo_tree__sdpa") runs the tree kernel when a call carries a plan and the model's own
attention (`base`: sdpa, flash_attention_2, eager) otherwise, with `base`'s mask function. A model
switched to it once (`use(model)`) therefore stays correct for every call, and gradient
checkpointing recomputes each layer with the same keywords, so the recompute takes the same
attention as the forward, reentrant or not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from treerpo.training.packing import PackedBatch

PREFIX = "treerpo_tree__"
NAME = PREFIX + "sdpa"  # the tree attention over sdpa (the CPU preset's attention)
FLEX_BLOCK = 128


@dataclass
class SegmentPlan:
    q_index: torch.Tensor  # (N, Q) flat packed index (s * L + i) of each block's queries, -1 = pad
    k_index: torch.Tensor  # (N, K) flat packed index of each block's keys, -1 = pad
    ancestors: torch.Tensor  # (N,) keys of each block before its own tokens (its path's tokens)
    _mask: torch.Tensor | None = field(default=None, repr=False)

    @property
    def mask(self) -> torch.Tensor:
        """(N, 1, Q, K) bool, True = attend: query i of block n sees key j <=> j <= ancestors[n] + i
        (the whole path, then its own tokens causally); a padded query sees key 0 only (no empty
        softmax row). N Q K values (44 MB a TreeRPO N=4 D=3 tree of 384-token segments), so it is
        built on the plan's device at first use and kept for the plan's life (every layer and the
        checkpoint recompute of one forward read it); the indices, small, are what a cache keeps."""
        if self._mask is None:
            limit = torch.where(self.q_index >= 0, self.ancestors[:, None]
                                + torch.arange(self.q_index.shape[1], device=self.q_index.device), 0)
            keys = torch.arange(self.k_index.shape[1], device=self.k_index.device)
            self._mask = (keys[None, None, :] <= limit[:, :, None])[:, None]
        return self._mask

    def to(self, device) -> "SegmentPlan":
        """The indices on `device`; the mask is built there when first read."""
        return SegmentPlan(self.q_index.to(device), self.k_index.to(device), self.ancestors.to(device))


@dataclass
class FlexPlan:
    owner: torch.Tensor  # (S, L) node of each packed token (0 = the prompt), -1 on padding
    ancestor: torch.Tensor  # (S, N, N) bool: ancestor[s, a, b] = node a is an ancestor-or-self of node b
    block_mask: object = None  # torch BlockMask, built on the plan's device (`to`)

    def to(self, device) -> "FlexPlan":
        moved = FlexPlan(self.owner.to(device), self.ancestor.to(device))
        moved.block_mask = flex_block_mask(moved)
        return moved


def segment_plan(packed: PackedBatch) -> SegmentPlan:
    """One block per node of every packed tree (see the module docstring), from the pack's node
    spans and ancestor matrix with no loop: block (s, n) queries node n's span and keys the spans
    of the nodes a with ancestor[s, a, n], in node order (a path's nodes come in packed order)."""
    length = packed.input_ids.shape[1]
    span = packed.node_span
    blk_s, blk_n = packed.ancestor.diagonal(dim1=1, dim2=2).nonzero(as_tuple=True)  # every node, in order
    base = blk_s * length
    q_start, q_len = base + span[blk_s, blk_n, 0], span[blk_s, blk_n, 1] - span[blk_s, blk_n, 0]
    n = len(blk_s)
    q_index = q_start[:, None] + torch.arange(int(q_len.max()))[None, :]
    q_index = torch.where(torch.arange(q_index.shape[1])[None, :] < q_len[:, None], q_index, -1)
    # keys: the path's spans laid end to end per block
    block, above = packed.ancestor[blk_s, :, blk_n].nonzero(as_tuple=True)  # (block, node on its path)
    starts = base[block] + span[blk_s[block], above, 0]
    lens = span[blk_s[block], above, 1] - span[blk_s[block], above, 0]
    k_len = torch.zeros(n, dtype=torch.long).index_add_(0, block, lens)
    offset_in_block = torch.cumsum(lens, 0) - lens - (torch.cumsum(k_len, 0) - k_len)[block]
    token_block = torch.repeat_interleave(block, lens)
    token_pos = torch.repeat_interleave(offset_in_block, lens) + _ramp(lens)
    token_index = torch.repeat_interleave(starts, lens) + _ramp(lens)
    k_index = torch.full((n, int(k_len.max())), -1, dtype=torch.long)
    k_index[token_block, token_pos] = token_index
    return SegmentPlan(q_index, k_index, k_len - q_len)  # a block's keys: its path, then its queries


def _ramp(lens: torch.Tensor) -> torch.Tensor:
    """0..len-1 for every length, concatenated."""
    total = int(lens.sum())
    return torch.arange(total) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)


def flex_plan(packed: PackedBatch) -> FlexPlan:
    """The node of every packed token and each tree's ancestor matrix (the pack's own), for
    FlexAttention's mask."""
    return FlexPlan(packed.owner, packed.ancestor)


def flex_block_mask(plan: FlexPlan):
    from torch.nn.attention.flex_attention import create_block_mask

    owner, ancestor = plan.owner, plan.ancestor
    s, length = owner.shape
    safe = owner.clamp(min=0)

    def mask_mod(b, h, q_idx, kv_idx):
        qn, kn = safe[b, q_idx], safe[b, kv_idx]
        visible = ancestor[b, kn, qn] & (kv_idx <= q_idx) & (owner[b, kv_idx] >= 0)
        return visible | ((owner[b, q_idx] < 0) & (kv_idx == q_idx))  # padding sees itself: no empty row

    return create_block_mask(mask_mod, s, None, length, length, device=owner.device, BLOCK_SIZE=FLEX_BLOCK)


def plan(packed: PackedBatch, kernel: str = "auto", device=None):
    """The plan of `kernel` ("segments", "flex" or "auto", which is segments on every device until
    flex is timed against it on a GPU), built on the CPU and moved to `device`."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if kernel == "auto":
        kernel = "segments"
    if kernel == "segments":
        return segment_plan(packed).to(device)
    if kernel == "flex":
        return flex_plan(packed).to(device)
    raise ValueError(f"unknown tree attention kernel {kernel!r}: segments, flex or auto")


def _segments(query, key, value, scaling, tree_plan: SegmentPlan):
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
    return packed.view(s, length, h, d)


_COMPILED_FLEX = None


def _flex(query, key, value, scaling, tree_plan: FlexPlan):
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    fn = flex_attention
    if query.device.type == "cuda":  # fused and block-sparse only when compiled
        if _COMPILED_FLEX is None:
            _COMPILED_FLEX = torch.compile(flex_attention, dynamic=True)
        fn = _COMPILED_FLEX
    out = fn(query, key, value, block_mask=tree_plan.block_mask, scale=scaling,
             enable_gqa=query.shape[1] != key.shape[1])  # (S, H, L, d)
    return out.transpose(1, 2)


def _base_attention(base: str, module):
    """The model's own attention function named `base`."""
    if base == "eager":  # each model defines its own eager attention
        return sys.modules[type(module).__module__].eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[base]


def _dispatcher(base: str):
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, tree_plan=None, **kwargs):
        """transformers attention function: the tree kernel when the call carries a plan (query
        (S, H, L, d), key/value (S, Hkv, L, d) -> output (S, L, H, d); packed padding gets 0 or
        attends to itself, no row reads it), `base` otherwise."""
        if tree_plan is None:
            return _base_attention(base, module)(module, query, key, value, attention_mask, scaling=scaling,
                                                 dropout=dropout, **kwargs)
        if isinstance(tree_plan, FlexPlan):
            return _flex(query, key, value, scaling, tree_plan), None
        return _segments(query, key, value, scaling, tree_plan), None

    return attention


def implementation(base: str = "sdpa") -> str:
    """The name of the attention implementation that runs tree plans and `base` otherwise
    (registered with transformers, together with `base`'s mask function)."""
    if base.startswith(PREFIX):
        return base
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    name = PREFIX + base
    AttentionInterface.register(name, _dispatcher(base))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


def register() -> None:
    """Register NAME (the tree attention over sdpa)."""
    implementation("sdpa")


def use(model) -> str:
    """Switch `model` for good to the tree attention over its current attention (idempotent);
    calls without a plan keep behaving as before. Returns the implementation's name."""
    name = implementation(model.config._attn_implementation)
    if model.config._attn_implementation != name:
        model.set_attn_implementation(name)
    return name

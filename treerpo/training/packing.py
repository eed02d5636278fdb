"""Tree packing: one sequence per tree, every shared token once, exact per-row log-probs back.

A tree's rows (one per leaf, `treerpo.sampling.rows`) repeat the prompt and every shared segment.
Packing lays a tree out as one sequence: the prompt once, then each node's segment once, in
depth-first order (the order of the node paths as tuples). Then

    attention   token i sees token j  <=>  node(j) is an ancestor-or-self of node(i) and j <= i
    position    pos_packed(i) = the position id the token has in any row that holds it
                (prompt length + offset in the response), so RoPE sees what it sees unpacked

so every packed token has exactly the hidden states it has in each row that holds it. A row's
response token at column c is predicted at its predecessor, column c - 1:

    logp[r, t] = log_softmax(logits[seq(r), idx(r, P + t - 1)])[input_ids[r, P + t]]

where idx(r, c) is the packed position of row r's column c and P the padded prompt width. The
predecessor of a child's first token is its parent's last token (the prompt's last at depth 1):
a branch point, where several rows read one position with different labels. Gradients flow back
through that gather into the shared computation, so any loss on the (B, T) log-probs has the
gradient of the unpacked loss, up to floating-point summation order.

Layout in (verl's): `input_ids`, `attention_mask`, `position_ids` of shape (B, T), the prompt
left-padded in columns [0, P), the response right-padded in [P, T), T - P = response length;
`uids` in the `treerpo.tree.topology` format. Padding rows (uid "pad...") are not packed:
their log-probs and entropies come back 0 (their response mask is 0, so no loss sees them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from treerpo.tree import topology


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (S, L) one tree per sequence, right-padded with 0
    position_ids: torch.Tensor  # (S, L)
    owner: torch.Tensor  # (S, L) the node of each packed token (0 = the prompt), -1 on padding
    ancestor: torch.Tensor  # (S, N, N) bool: ancestor[s, a, b] = node a is an ancestor-or-self of node b
    valid: torch.Tensor  # (S, L) bool, False on padding
    row_seq: torch.Tensor  # (B,) the row's sequence, -1 for padding rows
    row_index: torch.Tensor  # (B, T) packed position of each of the row's tokens, -1 where invalid
    prompt_width: int  # P
    node_span: torch.Tensor  # (S, N, 2) packed [start, end) of each node (0 = the prompt), 0 where absent

    @property
    def attention(self) -> torch.Tensor:
        """(S, 1, L, L) bool dense tree mask, True = may attend; padding sees itself only. Built
        on demand: it is L^2 per tree (a gigabyte at 32k packed tokens); the tree kernels never
        need it (treerpo/training/tree_attention.py)."""
        s, length = self.owner.shape
        safe = self.owner.clamp(min=0)
        batch = torch.arange(s)[:, None, None]
        visible = self.ancestor[batch, safe[:, None, :], safe[:, :, None]]  # key's node above query's
        causal = torch.ones(length, length, dtype=torch.bool, device=self.owner.device).tril()
        real = (self.owner >= 0)
        mask = visible & causal & real[:, :, None] & real[:, None, :]
        mask |= torch.eye(length, dtype=torch.bool, device=self.owner.device) & ~real[:, :, None]
        return mask[:, None]

    @property
    def rows(self) -> int:
        return self.row_index.shape[0]

    def to(self, device) -> "PackedBatch":
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}
        return PackedBatch(**moved)


def _ramp(lens: np.ndarray) -> np.ndarray:
    """0..len-1 for every length, concatenated."""
    return np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
         uids: Sequence[str], response_length: int) -> PackedBatch:
    """Pack a batch's rows into one sequence per tree (see the module docstring).

    Built from the uids' arrays with no loop over nodes or tokens: every (row, level) of the batch
    names a node by (tree, path prefix); `np.unique` over those keys gives each tree's nodes in
    depth-first order (a prefix padded with -1 sorts before its children), and every token, row
    index and ancestor pair is then a gather over those nodes.
    """
    b, t = input_ids.shape
    p = t - int(response_length)
    topo = topology.decode_batch(list(uids))
    resp_len = attention_mask[:, p:].sum(-1)
    last_end = torch.as_tensor(topo.ends.max(axis=1))
    real = torch.as_tensor(~topo.padding)
    if (resp_len[real] != last_end[real]).any():
        r = int(((resp_len != last_end) & real).nonzero()[0])
        raise ValueError(f"row {r}: response has {int(resp_len[r])} tokens but its uid {uids[r]!r} ends at {int(last_end[r])}")

    # trees in order of first appearance; a tree's prompt is its first row's
    real_rows = np.flatnonzero(~topo.padding)
    tree_ids: dict = {}
    row_tree = np.full(b, -1, dtype=np.int64)
    row_tree[real_rows] = [tree_ids.setdefault(topo.prompt_uids[r], len(tree_ids)) for r in real_rows]
    n_trees = len(tree_ids)
    first_row = real_rows[np.unique(row_tree[real_rows], return_index=True)[1]] if n_trees else real_rows
    prompt_mask = attention_mask[:, :p].bool()
    real_t, first_t = torch.as_tensor(real_rows), torch.as_tensor(first_row)
    differs = (prompt_mask[real_t] != prompt_mask[torch.as_tensor(first_row[row_tree[real_rows]])]).any(-1).numpy()
    if differs.any():
        r = int(real_rows[differs.argmax()])
        raise ValueError(f"rows {int(first_row[row_tree[r]])} and {r} share prompt uid {topo.prompt_uids[r]!r} "
                         "but not its length")
    n_prompt = prompt_mask[first_t].sum(-1).numpy().astype(np.int64)

    # nodes: one per distinct (tree, path prefix) over every (row, level)
    depth_max = topo.paths.shape[1]
    ent_r, ent_k = np.nonzero(np.arange(depth_max)[None, :] < topo.depth[:, None])
    prefix = np.where(np.arange(depth_max)[None, :] <= ent_k[:, None], topo.paths[ent_r], -1)
    keys = np.concatenate([row_tree[ent_r][:, None], prefix], axis=1)
    if len(keys):
        uniq, first_ent, ent_node = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    else:
        uniq, first_ent, ent_node = keys, np.zeros(0, np.int64), np.zeros(0, np.int64)
    ent_node = ent_node.reshape(-1)
    ent_start = np.where(ent_k > 0, topo.ends[ent_r, np.maximum(ent_k - 1, 0)], 0)
    ent_end = topo.ends[ent_r, ent_k]
    node_start, node_end = ent_start[first_ent], ent_end[first_ent]  # response columns, from one row
    clash = (ent_start != node_start[ent_node]) | (ent_end != node_end[ent_node])
    if clash.any():
        e = int(clash.argmax())
        key = tuple(int(x) for x in prefix[e, : ent_k[e] + 1])
        raise ValueError(f"node {key} of tree {topo.prompt_uids[ent_r[e]]!r} has different spans in two rows")
    node_tree, node_len = uniq[:, 0], node_end - node_start
    n_nodes = np.bincount(node_tree, minlength=n_trees)
    tree_first = np.cumsum(n_nodes) - n_nodes  # a tree's first node in the global order
    node_local = 1 + np.arange(len(uniq)) - tree_first[node_tree]  # 0 is the prompt
    cum = np.cumsum(node_len) - node_len
    node_off = n_prompt[node_tree] + cum - cum[tree_first[node_tree]] if len(uniq) else cum  # packed start
    seq_len = n_prompt + np.bincount(node_tree, weights=node_len, minlength=n_trees).astype(np.int64)

    length = int(seq_len.max(initial=0))
    width = int(n_nodes.max(initial=0)) + 1
    packed_ids = torch.zeros(n_trees, length, dtype=input_ids.dtype)
    packed_pos = torch.zeros(n_trees, length, dtype=position_ids.dtype)
    owners = torch.full((n_trees, length), -1, dtype=torch.long)
    # prompts: each tree's first row, its unpadded prompt columns in order
    ps, pc = prompt_mask[first_t].nonzero(as_tuple=True)
    pdst = prompt_mask[first_t].long().cumsum(-1)[ps, pc] - 1
    src_rows = first_t[ps]
    packed_ids[ps, pdst], packed_pos[ps, pdst], owners[ps, pdst] = input_ids[src_rows, pc], position_ids[src_rows, pc], 0
    # nodes: each segment's tokens from the row that defined it
    tok_node = np.repeat(np.arange(len(uniq)), node_len)
    ramp = _ramp(node_len)
    src_r = torch.as_tensor(ent_r[first_ent][tok_node])
    src_c = torch.as_tensor(p + node_start[tok_node] + ramp)
    dst_s = torch.as_tensor(node_tree[tok_node])
    dst_i = torch.as_tensor(node_off[tok_node] + ramp)
    packed_ids[dst_s, dst_i], packed_pos[dst_s, dst_i] = input_ids[src_r, src_c], position_ids[src_r, src_c]
    owners[dst_s, dst_i] = torch.as_tensor(node_local[tok_node])
    valid = owners >= 0

    # ancestor[s, a, b]: node a is on node b's path (the prompt, its ancestors, itself)
    ancestors = torch.zeros(n_trees, width, width, dtype=torch.bool)
    ancestors[:, 0, :] = torch.arange(width)[None, :] <= torch.as_tensor(n_nodes)[:, None]
    row_node = np.full((b, depth_max), -1, dtype=np.int64)  # the node of each (row, level)
    row_node[ent_r, ent_k] = ent_node
    above = row_node[ent_r]  # (entries, D): the nodes on each entry's path
    m, j = np.nonzero((np.arange(depth_max)[None, :] <= ent_k[:, None]))
    ancestors[torch.as_tensor(node_tree[ent_node[m]]), torch.as_tensor(node_local[above[m, j]]),
              torch.as_tensor(node_local[ent_node[m]])] = True
    node_span = torch.zeros(n_trees, width, 2, dtype=torch.long)
    node_span[:, 0, 1] = torch.as_tensor(n_prompt)
    node_span[torch.as_tensor(node_tree), torch.as_tensor(node_local)] = torch.as_tensor(
        np.stack([node_off, node_off + node_len], axis=1).reshape(-1, 2))

    # row_index[r, c]: where row r's column c sits in its tree's sequence
    row_seq = torch.as_tensor(row_tree)
    row_index = torch.full((b, t), -1, dtype=torch.long)
    rr, rc = prompt_mask[real_t].nonzero(as_tuple=True)
    rows_t = real_t[rr]
    row_index[rows_t, rc] = prompt_mask.long().cumsum(-1)[rows_t, rc] - 1
    ent_len = ent_end - ent_start
    ramp = _ramp(ent_len)
    row_index[torch.as_tensor(np.repeat(ent_r, ent_len)), torch.as_tensor(p + np.repeat(ent_start, ent_len) + ramp)] = \
        torch.as_tensor(np.repeat(node_off[ent_node], ent_len) + ramp)

    packed = PackedBatch(packed_ids, packed_pos, owners, ancestors, valid, row_seq, row_index, p, node_span)
    _check_rows(packed, input_ids, position_ids)
    return packed


def _check_rows(packed: PackedBatch, input_ids: torch.Tensor, position_ids: torch.Tensor) -> None:
    """Every row's tokens and positions must be what the packed sequence holds where it reads them:
    otherwise the uids claim a sharing the token ids contradict."""
    for name, rows, flat in (("token ids", input_ids, packed.input_ids), ("position ids", position_ids, packed.position_ids)):
        back = to_rows(flat, packed)
        bad = (back != rows) & (packed.row_index >= 0)
        if bad.any():
            r = int(bad.any(-1).nonzero()[0])
            raise ValueError(f"row {r}: its {name} differ from the packed tree's (a shared node holds different tokens)")


def to_rows(values: torch.Tensor, packed: PackedBatch) -> torch.Tensor:
    """Packed per-token values (S, L, ...) -> per-row (B, T, ...): row r's column c reads
    values[row_seq[r], row_index[r, c]]; 0 where the row has no token. Differentiable."""
    seq = packed.row_seq.clamp(min=0)[:, None].expand_as(packed.row_index)
    out = values[seq, packed.row_index.clamp(min=0)]
    keep = (packed.row_index >= 0).reshape(*packed.row_index.shape, *([1] * (values.dim() - 2)))
    return torch.where(keep, out, torch.zeros((), dtype=values.dtype))


def to_packed(values: torch.Tensor, packed: PackedBatch) -> torch.Tensor:
    """The reverse: per-row (B, T, ...) -> packed (S, L, ...). A shared token takes the value of
    one of the rows that hold it, so use it for values that agree across them (ids, old
    log-probs, positions), not for per-row ones (advantages, loss masks)."""
    s, length = packed.input_ids.shape
    out = torch.zeros(s, length, *values.shape[2:], dtype=values.dtype)
    keep = packed.row_index >= 0
    seq = packed.row_seq[:, None].expand_as(packed.row_index)
    out[seq[keep], packed.row_index[keep]] = values[keep]
    return out


CHUNK_ROWS = 1024  # packed positions per block of the log-prob path (verl's chunked logsumexp uses 1024 too)


def _position_stats(z: torch.Tensor, temperature: float, with_entropy: bool) -> torch.Tensor:
    """(2, n): logsumexp and entropy of the logits rows `z` (n, V) at `temperature`, in float32."""
    z = z.float() / temperature
    lse = torch.logsumexp(z, dim=-1)
    ent = lse - (torch.softmax(z, dim=-1) * z).sum(-1) if with_entropy else torch.zeros_like(lse)
    return torch.stack([lse, ent])


def response_logprobs(logits: torch.Tensor, packed: PackedBatch, input_ids: torch.Tensor,
                      with_entropy: bool = True, temperature: float = 1.0,
                      chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row response log-probs and entropies (B, R) from the packed forward's logits (S, L, V).

        logp[r, t]    = z[s, i, y] - logsumexp(z[s, i])                z = logits / temperature
        entropy[r, t] = logsumexp(z[s, i]) - sum_v softmax(z[s, i])_v z[s, i, v]
        s = row_seq[r],  i = row_index[r, P + t - 1] (the predecessor),  y = input_ids[r, P + t]

    computed once per packed position and gathered; 0 where the row has no token. The float32
    work over the vocabulary runs on contiguous blocks of `chunk_rows` positions, and under
    autograd each block is recomputed in backward instead of kept (torch.utils.checkpoint): the
    path keeps O(S L) values for backward and at most one block's O(chunk_rows V) at a time,
    never a float32 tensor of the whole pack's vocabulary.
    """
    p = packed.prompt_width
    s, length, vocab = logits.shape
    pred = packed.row_index[:, p - 1: -1]
    labels = input_ids[:, p:]
    keep = (pred >= 0) & (packed.row_index[:, p:] >= 0)
    flat = packed.row_seq.clamp(min=0)[:, None] * length + pred.clamp(min=0)  # (B, R) flat packed position
    x = logits.reshape(s * length, vocab)
    grad = torch.is_grad_enabled() and x.requires_grad
    blocks = []
    for z in x.split(chunk_rows):
        if grad:
            blocks.append(torch.utils.checkpoint.checkpoint(_position_stats, z, temperature, with_entropy,
                                                            use_reentrant=False))
        else:
            blocks.append(_position_stats(z, temperature, with_entropy))
    stats = torch.cat(blocks, dim=1) if blocks else x.new_zeros(2, 0, dtype=torch.float32)  # (2, S L)
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    picked = x[flat, labels].float() / temperature - stats[0][flat]
    logp = torch.where(keep, picked, zero)
    if not with_entropy:
        return logp, None
    return logp, torch.where(keep, stats[1][flat], zero)


def token_counts(attention_mask: torch.Tensor, packed: PackedBatch) -> dict:
    """Tokens the actor computes unpacked (every valid token of every row, padding rows included)
    vs packed (every packed token, padding rows left out), and the ratio packed / unpacked."""
    unpacked = int(attention_mask.sum())
    packed_n = int(packed.valid.sum())
    return {"unpacked": unpacked, "packed": packed_n, "ratio": packed_n / max(unpacked, 1)}

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
    segments: list  # per sequence: (node path, start, end) in packed positions, () = the prompt

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


def _trees(topo: topology.BatchTopology) -> dict:
    """prompt uid -> row indices, in order of first appearance (padding rows left out)."""
    trees: dict = {}
    for r, prompt in enumerate(topo.prompt_uids):
        if not topo.padding[r]:
            trees.setdefault(prompt, []).append(r)
    return trees


def _nodes(topo: topology.BatchTopology, rows: list[int]) -> dict:
    """node path (tuple) -> (a row holding it, response start, response end), depth-first order."""
    nodes: dict = {}
    for r in rows:
        start = 0
        for k in range(int(topo.depth[r])):
            key = tuple(int(p) for p in topo.paths[r, : k + 1])
            end = int(topo.ends[r, k])
            if key in nodes and nodes[key][1:] != (start, end):
                raise ValueError(f"node {key} of tree {topo.prompt_uids[r]!r} has different spans in two rows")
            nodes.setdefault(key, (r, start, end))
            start = end
    return dict(sorted(nodes.items()))  # tuple order = depth-first (pre-order)


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
         uids: Sequence[str], response_length: int) -> PackedBatch:
    """Pack a batch's rows into one sequence per tree (see the module docstring)."""
    b, t = input_ids.shape
    p = t - int(response_length)
    topo = topology.decode_batch(list(uids))
    resp_len = attention_mask[:, p:].sum(-1)
    last_end = torch.as_tensor(topo.ends.max(axis=1))
    real = torch.as_tensor(~topo.padding)
    if (resp_len[real] != last_end[real]).any():
        r = int(((resp_len != last_end) & real).nonzero()[0])
        raise ValueError(f"row {r}: response has {int(resp_len[r])} tokens but its uid {uids[r]!r} ends at {int(last_end[r])}")

    row_seq = torch.full((b,), -1, dtype=torch.long)
    row_index = torch.full((b, t), -1, dtype=torch.long)
    seqs = []  # per tree: (ids, positions, node of each token, ancestor matrix)
    for s, rows in enumerate(_trees(topo).values()):
        first = rows[0]
        prompt_cols = attention_mask[first, :p].bool()
        ids, pos = [input_ids[first, :p][prompt_cols]], [position_ids[first, :p][prompt_cols]]
        n_prompt = int(prompt_cols.sum())
        nodes = _nodes(topo, rows)
        node_id = {key: i + 1 for i, key in enumerate(nodes)}  # 0 is the prompt
        starts, offset = {}, n_prompt
        spans = [((), 0, n_prompt)]
        owner = [torch.zeros(n_prompt, dtype=torch.long)]
        anc = torch.eye(len(nodes) + 1, dtype=torch.bool)
        anc[:, 0] = True
        for key, (r, start, end) in nodes.items():
            ids.append(input_ids[r, p + start: p + end])
            pos.append(position_ids[r, p + start: p + end])
            owner.append(torch.full((end - start,), node_id[key], dtype=torch.long))
            starts[key] = offset
            spans.append((key, offset, offset + end - start))
            offset += end - start
            if len(key) > 1:
                anc[node_id[key]] |= anc[node_id[key[:-1]]]
        for r in rows:
            if not torch.equal(attention_mask[r, :p].bool(), prompt_cols):
                raise ValueError(f"rows {first} and {r} share prompt uid {topo.prompt_uids[r]!r} but not its length")
            row_seq[r] = s
            row_index[r, :p][prompt_cols] = torch.arange(n_prompt)
            start = 0
            for k in range(int(topo.depth[r])):
                key, end = tuple(int(x) for x in topo.paths[r, : k + 1]), int(topo.ends[r, k])
                row_index[r, p + start: p + end] = starts[key] + torch.arange(end - start)
                start = end
        seqs.append((torch.cat(ids), torch.cat(pos), torch.cat(owner), anc, spans))

    length = max((len(x[0]) for x in seqs), default=0)
    width = max((x[3].shape[0] for x in seqs), default=1)
    n = len(seqs)
    packed_ids = torch.zeros(n, length, dtype=input_ids.dtype)
    packed_pos = torch.zeros(n, length, dtype=position_ids.dtype)
    owners = torch.full((n, length), -1, dtype=torch.long)
    ancestors = torch.zeros(n, width, width, dtype=torch.bool)
    valid = torch.zeros(n, length, dtype=torch.bool)
    for s, (ids, pos, owner, anc, _) in enumerate(seqs):
        m = len(ids)
        packed_ids[s, :m], packed_pos[s, :m], valid[s, :m], owners[s, :m] = ids, pos, True, owner
        ancestors[s, : anc.shape[0], : anc.shape[0]] = anc.T  # anc[i, j]: j is an ancestor of i
    packed = PackedBatch(packed_ids, packed_pos, owners, ancestors, valid, row_seq, row_index, p,
                         [x[4] for x in seqs])
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

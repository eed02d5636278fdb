"""A local generation engine over HF transformers, with verl's `server_manager.generate` interface.

    out = await engine.generate(request_id, prompt_ids=[...], sampling_params={...})
    out.token_ids, out.log_probs, out.stop_reason, out.extra_fields["num_cached_tokens"]

Concurrent calls are gathered into batches (left-padded, KV-cached decoding), like a server
would, so a tree level's sibling requests run as one batch. Sampling params honoured:
`max_tokens`, `temperature` (0 = greedy), `top_p`, `seed` (per request), `ignore_eos`, `logprobs`.

The recorded logprob of a sampled token is log_softmax(logits / temperature) at that position,
which is what verl's actor computes for `old_log_probs` (top_p shapes the sampling only). The
engine has no prefix cache and reports num_cached_tokens = 0; vLLM reports real hits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch


@dataclass
class LocalTokenOutput:
    """Field-compatible with verl.workers.rollout.replica.TokenOutput."""

    token_ids: list[int]
    log_probs: Optional[list[float]] = None
    routed_experts: Any = None
    stop_reason: Optional[str] = None
    num_preempted: Optional[int] = None
    extra_fields: dict = field(default_factory=dict)


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: Optional[int]
    ignore_eos: bool
    want_logprobs: bool
    future: asyncio.Future


class LocalEngine:
    def __init__(self, model, eos_token_ids: int | Iterable[int], pad_token_id: int = 0,
                 max_batch_size: int = 64, default_max_tokens: int = 256, seed: int = 0):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.eos = frozenset([eos_token_ids] if isinstance(eos_token_ids, int) else eos_token_ids)
        self.pad_token_id = pad_token_id
        self.max_batch_size = max_batch_size
        self.default_max_tokens = default_max_tokens
        self.generator = torch.Generator().manual_seed(seed)
        self._queue: list[_Request] = []
        self._worker: Optional[asyncio.Task] = None
        self.stats = {"requests": 0, "batches": 0, "prompt_tokens": 0, "generated_tokens": 0}

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **kwargs):
        sp = dict(sampling_params)
        req = _Request(
            prompt_ids=[int(t) for t in prompt_ids],
            max_tokens=int(sp.get("max_tokens", sp.get("max_new_tokens", self.default_max_tokens))),
            temperature=float(sp.get("temperature", 1.0)),
            top_p=float(sp.get("top_p", 1.0)),
            seed=sp.get("seed"),
            ignore_eos=bool(sp.get("ignore_eos", False)),
            want_logprobs=bool(sp.get("logprobs", False)),
            future=asyncio.get_running_loop().create_future(),
        )
        if req.max_tokens < 1 or not req.prompt_ids:
            raise ValueError(f"request {request_id}: need a prompt and max_tokens >= 1")
        self._queue.append(req)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await req.future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let concurrently issued requests join the first batch
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch_size], self._queue[self.max_batch_size :]
            try:
                results = await asyncio.to_thread(self._run_batch, batch)
            except Exception as e:  # hand the error to every waiting caller, never hang them
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            for r, out in zip(batch, results):
                if not r.future.done():
                    r.future.set_result(out)

    # ---- the batched decoding loop ---------------------------------------------------------
    @torch.no_grad()
    def _run_batch(self, reqs: list[_Request]) -> list[LocalTokenOutput]:
        b = len(reqs)
        plen = max(len(r.prompt_ids) for r in reqs)
        input_ids = torch.full((b, plen), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((b, plen), dtype=torch.long)
        for i, r in enumerate(reqs):
            input_ids[i, plen - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attn[i, plen - len(r.prompt_ids) :] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator().manual_seed(int(r.seed)) if r.seed is not None else self.generator for r in reqs]
        dev = self.device
        input_ids, attn, pos = input_ids.to(dev), attn.to(dev), pos.to(dev)
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :].float().cpu()
        tokens: list[list[int]] = [[] for _ in reqs]
        logps: list[list[float]] = [[] for _ in reqs]
        done = [False] * b
        next_pos = pos[:, -1] + 1
        for _ in range(max(r.max_tokens for r in reqs)):
            step = torch.full((b,), self.pad_token_id, dtype=torch.long)
            for i, r in enumerate(reqs):
                if done[i]:
                    continue
                t_scale = r.temperature if r.temperature > 0 else 1.0
                logp = torch.log_softmax(logits[i] / t_scale, dim=-1)
                if r.temperature <= 0:
                    tok = int(torch.argmax(logp))
                else:
                    tok = self._sample(logp, r.top_p, gens[i])
                tokens[i].append(tok)
                logps[i].append(float(logp[tok]))
                step[i] = tok
                if len(tokens[i]) >= r.max_tokens or (tok in self.eos and not r.ignore_eos):
                    done[i] = True
            if all(done):
                break
            attn = torch.cat([attn, torch.ones((b, 1), dtype=torch.long, device=dev)], dim=1)
            out = self.model(input_ids=step[:, None].to(dev), attention_mask=attn, position_ids=next_pos[:, None],
                             past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1, :].float().cpu()
            next_pos = next_pos + 1
        self.stats["requests"] += b
        self.stats["batches"] += 1
        self.stats["prompt_tokens"] += sum(len(r.prompt_ids) for r in reqs)
        self.stats["generated_tokens"] += sum(len(t) for t in tokens)
        return [
            LocalTokenOutput(
                token_ids=tokens[i],
                log_probs=logps[i] if r.want_logprobs else None,
                stop_reason="completed",
                extra_fields={"num_cached_tokens": 0},
            )
            for i, r in enumerate(reqs)
        ]

    @staticmethod
    def _sample(logp: torch.Tensor, top_p: float, gen: torch.Generator) -> int:
        probs = logp.exp()
        if top_p < 1.0:
            sorted_p, idx = probs.sort(descending=True)
            keep = sorted_p.cumsum(0) - sorted_p < top_p  # smallest set whose mass reaches top_p
            probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=gen))

"""The engine seam: "continue these token ids for at most L tokens".

`SegmentSource` wraps anything with verl's `server_manager.generate` signature

    await generate(request_id, *, prompt_ids=[...], sampling_params={...}) -> TokenOutput-like
        (.token_ids, .log_probs, .stop_reason, .extra_fields["num_cached_tokens"])

which is verl's vLLM `LLMServerClient` in training, and outside verl `treerpo.engines.vllm.VLLMEngine`
(vLLM's AsyncLLM in-process, prefix caching on) or `treerpo.engines.local.LocalEngine` (transformers).
Only the first output of a call comes back, so a node with k children makes k concurrent calls
with the same prefix; all calls of a tree share one request_id (sticky routing keeps the tree
on one vLLM replica, where the prefix cache holds its shared prefixes).

A segment ends at the first EOS token (kept, as it is part of what the policy generated), at
any position, the first included; tokens an engine returns after it are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from treerpo.tree.tree import StopReason


@dataclass
class Segment:
    token_ids: list[int]
    logprobs: Optional[list[float]]
    hit_eos: bool
    num_cached_tokens: int = 0
    # (first, last) policy version that generated it: verl's rollout reports the trainer step
    # whose weights the server held (`min_global_steps`/`max_global_steps`); None if not reported
    global_steps: Optional[tuple[int, int]] = None


class SegmentSource:
    def __init__(self, engine: Any, sampling_params: dict, eos_token_ids: int | Iterable[int]):
        self.engine = engine
        self.sampling_params = dict(sampling_params)
        self.sampling_params["logprobs"] = True
        ids = [eos_token_ids] if isinstance(eos_token_ids, int) else list(eos_token_ids)
        if not ids:
            raise ValueError("at least one EOS token id is needed")
        self.eos = frozenset(int(i) for i in ids)
        self.calls = 0

    async def continue_(self, request_id: str, prefix_ids: list[int], max_tokens: int,
                        seed: Optional[int] = None) -> Segment:
        """One segment after `prefix_ids`; `seed`, if given, is the engine's sampling seed for this
        call (vLLM's `SamplingParams.seed`: the call draws from its own generator)."""
        if max_tokens < 1:
            raise ValueError(f"request {request_id}: asked for {max_tokens} tokens")
        params = dict(self.sampling_params, max_tokens=int(max_tokens))
        if seed is not None:
            params["seed"] = int(seed)
        self.calls += 1
        out = await self.engine.generate(request_id, prompt_ids=list(prefix_ids), sampling_params=params)
        tokens = list(out.token_ids)
        if not tokens:
            raise RuntimeError(
                f"engine returned no tokens for request {request_id} (stop_reason={out.stop_reason!r}); "
                "an aborted generation cannot be placed in a tree"
            )
        tokens = tokens[:max_tokens]
        logprobs = list(out.log_probs)[: len(tokens)] if out.log_probs else None
        cut = next((i for i, t in enumerate(tokens) if t in self.eos), None)
        if cut is not None:
            tokens = tokens[: cut + 1]
            logprobs = logprobs[: cut + 1] if logprobs is not None else None
        extra = getattr(out, "extra_fields", None) or {}
        cached = extra.get("num_cached_tokens") or 0
        lo, hi = extra.get("min_global_steps"), extra.get("max_global_steps")
        steps = (int(lo), int(hi if hi is not None else lo)) if lo is not None else None
        return Segment(tokens, logprobs, cut is not None, int(cached), steps)


# ---- stop classes ------------------------------------------------------------------------------
def has_boxed(text: str) -> bool:
    return "\\boxed{" in text or "\\boxed " in text


def is_repetitive(text: str, window: int = 32, count: int = 8) -> bool:
    """True if some `window`-character substring occurs at least `count` times (overlaps count)."""
    if len(text) < window + count - 1:
        return False
    seen: dict[str, int] = {}
    for i in range(len(text) - window + 1):
        s = text[i : i + window]
        c = seen.get(s, 0) + 1
        if c >= count:
            return True
        seen[s] = c
    return False


def classify(
    seg: Segment,
    depth: int,
    response_len: int,
    *,
    max_depth: int,
    max_response: int,
    detokenize: Optional[Callable[[list[int]], str]] = None,
    repetition: Optional[tuple[int, int]] = None,
) -> Optional[StopReason]:
    """Why a path stops after this segment, in TreePO's order; None if it stays active.

    FINISHED (a boxed answer and EOS in this segment), EOS, MAX_LENGTH (the response reached the
    maximum length), MAX_DEPTH, REPETITION (only when `repetition=(window, count)` is given).
    The boxed and repetition checks read text through `detokenize`; without it they never fire.
    """
    text = detokenize(seg.token_ids) if detokenize is not None else None
    if seg.hit_eos:
        return StopReason.FINISHED if text is not None and has_boxed(text) else StopReason.EOS
    if response_len >= max_response:
        return StopReason.MAX_LENGTH
    if depth >= max_depth:
        return StopReason.MAX_DEPTH
    if repetition is not None and text is not None and is_repetitive(text, *repetition):
        return StopReason.REPETITION
    return None

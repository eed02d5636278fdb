"""A deterministic scripted engine with verl's server_manager.generate signature, logging calls."""

import asyncio
from dataclasses import dataclass, field


@dataclass
class FakeOutput:
    token_ids: list
    log_probs: list | None = None
    stop_reason: str = "completed"
    extra_fields: dict = field(default_factory=dict)


class ScriptedEngine:
    """rule(prefix_ids, max_tokens, call_index) -> token list (cut to max_tokens by the engine).

    The rule is called when a call is issued, in issue order (call_index counts issued calls).
    delay(prefix_ids, call_index) -> how many event-loop turns (>= 1) the call takes before it
    returns; 1 by default, so concurrent calls return in issue order. A call's `started` and
    `returned` are ticks of one clock shared by all calls.
    """

    def __init__(self, rule, prompt_len, delay=None):
        self.rule = rule
        self.prompt_len = prompt_len
        self.delay = delay or (lambda prefix, index: 1)
        self.calls = []  # dicts: request_id, prefix, tokens, started, returned
        self.clock = 0

    async def generate(self, request_id, *, prompt_ids, sampling_params):
        call = {"request_id": request_id, "prefix": tuple(prompt_ids), "started": self.clock,
                "max_tokens": sampling_params["max_tokens"]}
        self.clock += 1
        index = len(self.calls)
        self.calls.append(call)
        toks = list(self.rule(list(prompt_ids), sampling_params["max_tokens"], index))[: sampling_params["max_tokens"]]
        for _ in range(max(1, self.delay(list(prompt_ids), index))):
            await asyncio.sleep(0)  # let concurrent calls interleave
        call["tokens"] = toks
        call["returned"] = self.clock
        self.clock += 1
        return FakeOutput(toks, [-0.5 - 0.01 * (index % 7)] * len(toks), extra_fields={"num_cached_tokens": len(prompt_ids) - self.prompt_len})

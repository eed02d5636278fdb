"""`seeded_single_turn_agent`: verl's `single_turn_agent` with a fixed vLLM seed per problem.

Validation that samples (temperature > 0) is noisy: two evaluations of the same policy on the
same problems differ by the sampling alone. Seeding each request from the problem's text
(and the sample's index among `val_kwargs.n`) gives every evaluation of a run the same random
stream for the same problem: common random numbers. vLLM draws its sampling noise for a seeded
request from that request's own generator (`vllm/v1/sample/ops/topk_topp_sampler.py`,
`forward_cpu`/`forward_native`: `q[i].exponential_(generator=...)`), so an unchanged policy
samples the same answers again, and a changed one differs only where its probabilities moved.
Each evaluation is still an unbiased estimate of the sampled accuracy; what shrinks is the
noise of the *difference* between two evaluations, which is what a learning curve shows.

Use it by naming it in the validation rows' `agent_name` column (the tiny CPU run does; for the
GPU recipe, write it into the val parquet). Rows are seeded with

    seed = crc32(json(raw_prompt)) + 1_000_003 * session_id + 7_919 * rollout.seed   (mod 2^31)

where `session_id` is the sample's index among the problem's `n` samples (verl's
`AgentLoopWorkerTQ._run_prompt` passes it) and `rollout.seed` is verl's vLLM seed (default 42),
so a run with another seed sees other draws.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

NAME = "seeded_single_turn_agent"


def problem_seed(raw_prompt, session_id: int = 0, run_seed: int = 0) -> int:
    """The vLLM seed of one sample: stable for the same chat prompt, sample index and run seed."""
    messages = [dict(m) for m in raw_prompt]
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    return (zlib.crc32(text.encode()) + 1_000_003 * int(session_id) + 7_919 * int(run_seed)) % 2**31


@register(NAME)
class SeededSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn agent loop; each request carries `problem_seed(...)` as its vLLM seed."""

    async def run(self, sampling_params: dict[str, Any], **kwargs):
        if "session_id" not in kwargs and int(self.rollout_config.val_kwargs.get("n", 1)) > 1:
            # verl's older agent-loop worker (experimental/agent_loop/agent_loop.py) repeats a problem's
            # rows without an index: every sample would get the same seed and the same answer
            raise ValueError(f"{NAME}: val_kwargs.n={self.rollout_config.val_kwargs.n} samples per problem, but "
                             "this worker passes no session_id to tell them apart; use trainer.v1 (TransferQueue) "
                             "or val_kwargs.n=1")
        seed = problem_seed(kwargs["raw_prompt"], kwargs.get("session_id", 0), self.rollout_config.get("seed", 0) or 0)
        return await super().run({**sampling_params, "seed": seed}, **kwargs)

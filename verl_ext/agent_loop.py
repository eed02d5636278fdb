"""`tree_agent`: verl 0.9.1 agent loop that samples one tree per prompt, one output per leaf.

Select it with `actor_rollout_ref.rollout.agent.default_agent_loop=tree_agent` and the manager
`+actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.tree_worker.TreeAgentLoopManager`
(which scores every leaf on its own and writes each leaf's topology into its row's uid), with
`actor_rollout_ref.rollout.n=1`: the tree's shape (`tree.rollout.*`) sets the leaves per prompt.
Validation rows carrying `agent_name: single_turn_agent` are sampled flat as usual.
"""

from __future__ import annotations

import functools
import logging
import time
import zlib
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register

from treerpo.sampling.rows import leaf_rows
from treerpo.sampling.sampler import sample_tree
from treerpo.sampling.segments import SegmentSource
from verl_ext.tree_metrics import tree_stats
from verl_ext.tree_config import rollout_options

logger = logging.getLogger(__name__)

TREE_KEY = "tree_uid"  # extra_fields key that marks a tree leaf's output
TREE_OBJECT_KEY = "_tree"  # the Tree itself, on the first leaf's output; popped before TransferQueue


@functools.lru_cache(maxsize=8)
def _generation_eos_ids(model_path: str) -> tuple[int, ...]:
    """EOS ids of the model's generation_config (what vLLM stops on besides the tokenizer's)."""
    try:
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except Exception:  # no generation_config.json: the tokenizer's EOS is all there is
        return ()
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)


def eos_token_ids(tokenizer, model_path: str | None) -> list[int]:
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    if model_path:
        ids.update(_generation_eos_ids(str(model_path)))
    if not ids:
        raise ValueError("neither the tokenizer nor the model's generation_config names an EOS token")
    return sorted(ids)


def weight_versions(leaf, step: int) -> dict[str, int]:
    """`min_global_steps` / `max_global_steps` of a leaf's row: the oldest and newest policy
    version among the segments of its path, as verl's rollout reported them for each call.
    verl's trainer reads both as ints for every row (staleness metrics and off-policy control,
    `verl/trainer/ppo/v1/trainer_base.py:1897`); an engine that reports none (the local engine)
    generated with the current weights, `step`."""
    versions = [v for n in leaf.lineage() if n.global_steps is not None for v in n.global_steps]
    return {"min_global_steps": min(versions, default=step), "max_global_steps": max(versions, default=step)}


def tree_seed_key(prompt_ids: list[int], global_steps) -> str:
    """`tree.rollout.seeded_segments`' key of a tree: its prompt's tokens and the trainer step (not
    verl's uid, a fresh uuid4 per prompt and run)."""
    return f"{zlib.crc32(bytes(str(list(prompt_ids)), 'ascii')):08x}:{int(global_steps)}"


@register("tree_agent")
class TreeAgentLoop(AgentLoopBase):
    async def run(self, sampling_params: dict[str, Any], **kwargs) -> list[AgentLoopOutput]:
        opts = rollout_options(self.config)
        if int(kwargs.get("session_id", 0)) != 0:
            raise ValueError(
                "tree_agent samples one tree per prompt: set actor_rollout_ref.rollout.n=1 and the leaves per "
                f"prompt with tree.rollout.* (got session {kwargs.get('session_id')})"
            )
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))
        model_path = self.config.actor_rollout_ref.model.get("path")
        source = SegmentSource(self.server_manager, sampling_params, eos_token_ids(self.tokenizer, model_path))
        start = time.perf_counter()
        tree = await sample_tree(
            prompt_ids,
            str(kwargs["uid"]),
            source,
            opts,
            int(self.rollout_config.response_length),
            request_id=uuid4().hex,  # one id for every call of this tree: sticky routing
            detokenize=functools.partial(self.tokenizer.decode, skip_special_tokens=True),
            seed_key=tree_seed_key(prompt_ids, kwargs.get("global_steps", 0)) if opts.seeded_segments else None,
        )
        elapsed = time.perf_counter() - start
        stats = tree_stats(tree)
        outputs = []
        step = int(kwargs.get("global_steps", 0))
        for i, row in enumerate(leaf_rows(tree, opts.credit)):
            extra = {TREE_KEY: row.uid, "tree_stop_reason": row.leaf.stop_reason.value,
                     **weight_versions(row.leaf, step)}
            if i == 0:
                extra["tree_stats"] = stats
                extra[TREE_OBJECT_KEY] = tree
            outputs.append(
                AgentLoopOutput(
                    prompt_ids=prompt_ids,
                    response_ids=row.response_ids,
                    response_mask=row.response_mask,
                    response_logprobs=row.response_logprobs,
                    num_turns=2,
                    metrics=AgentLoopMetrics(generate_sequences=elapsed),
                    extra_fields=extra,
                )
            )
        return outputs

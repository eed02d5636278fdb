"""The agent-loop worker and manager that turn a tree's leaves into training rows (verl 0.9.1 v1).

verl's own `AgentLoopWorkerTQ._agent_loop_postprocess` accepts a list of outputs but scores them
as one batch, copies the last output's reward to all of them, and gives every row the prompt's
uid. For tree leaves that is wrong on both counts, so for outputs of the `tree_agent` loop this
worker:
  * scores every leaf on its own with verl's configured reward function (`_compute_score` on a
    one-output list, as verl does for a flat sample), concurrently;
  * writes each row's uid as the leaf's topology (`treerpo.tree.topology`), which the
    `treerpo` and `treepo` estimators read; TransferQueue keys stay
    `{prompt uid}_{session}_{leaf index}`, so verl's replay buffer groups a tree's rows under its
    prompt as usual;
  * optionally appends the tree to the JSONL dump (`tree.rollout.dump_path`).
Any other output (validation's `single_turn_agent`) goes through verl's code unchanged.

Use: `+actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.tree_worker.TreeAgentLoopManager`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
import torch
import transfer_queue as tq
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from treerpo.advantages.per_tree import tree_record
from treerpo.tree.record import append_jsonl
from verl_ext.agent_loop import TREE_KEY, TREE_OBJECT_KEY
from verl_ext.tree_config import advantage_options, rollout_options


# verl's worker class itself, without the @ray.remote wrapper (subclassing the wrapper raises).
_TQWorker = AgentLoopWorkerTQ.__ray_actor_class__


class TreeAgentLoopWorker(_TQWorker):
    def __init__(self, *args, **kwargs):
        """Why this __init__ exists: Ray wraps every method of an actor class, inherited ones
        included, and ships the wrappers with cloudpickle. verl's worker class cannot be found
        under its own name (`agent_loop_tq.AgentLoopWorkerTQ` is the Ray wrapper), so its
        inherited __init__ travels by value, holding a copy of that class in its `super()` cell,
        while this class travels by reference and so derives from the real one: in the actor,
        verl's `super().__init__` (`verl/trainer/ppo/v1/agent_loop_tq.py:55`) then fails with
        "super(type, obj): obj must be an instance or subtype of type". Our own __init__ travels
        by reference and calls the real class's __init__.
        """
        _TQWorker.__init__(self, *args, **kwargs)

    async def _agent_loop_postprocess(self, output, validate, **kwargs) -> None:
        outputs = output if isinstance(output, list) else [output]
        if not outputs or TREE_KEY not in outputs[0].extra_fields:
            return await super()._agent_loop_postprocess(output, validate, **kwargs)
        tree = outputs[0].extra_fields.pop(TREE_OBJECT_KEY, None)

        await asyncio.gather(*(self._compute_score([o], kwargs=kwargs) for o in outputs))
        await asyncio.gather(
            *(
                self._compute_teacher_logprobs(o, prompt_ids=o.prompt_ids, response_ids=o.response_ids,
                                               validate=validate, sample_kwargs=kwargs)
                for o in outputs
            )
        )
        await tq.async_kv_batch_put(**self.tree_rows(outputs, kwargs), partition_id="train" if not validate else "val")

        opts = rollout_options(self.config)
        if opts.dump_path and tree is not None:
            for leaf, o in zip(tree.leaves(), outputs):
                leaf.reward = o.reward_score
            record = tree_record(tree, self.tokenizer.decode, opts.method, advantage_options(self.config),
                                 step=int(kwargs.get("global_steps", 0)))
            append_jsonl(opts.dump_path, record)

    def tree_rows(self, outputs: list, kwargs: dict[str, Any]) -> dict:
        """TransferQueue keys, fields and tags for a tree's leaf outputs (verl's layout)."""
        uid, session_id = kwargs["uid"], kwargs["session_id"]
        keys, fields, tags = [], [], []
        for i, out in enumerate(outputs):
            prompts = torch.tensor(out.prompt_ids, dtype=torch.int64)
            responses = torch.tensor(out.response_ids, dtype=torch.int64)
            input_ids = torch.cat([prompts, responses], dim=0)
            attention_mask = torch.ones_like(input_ids, dtype=torch.int64)
            multi_modal_inputs = self._compute_multi_modal_inputs(out, input_ids)
            position_ids = self._compute_position_ids(
                input_ids.unsqueeze(0), attention_mask.unsqueeze(0), multi_modal_inputs
            ).squeeze(0)
            field = out.as_dict()
            field.update(kwargs)
            field.pop("multi_modal_data", None)
            field["uid"] = out.extra_fields[TREE_KEY]  # the leaf's topology, for the estimators
            field["loss_mask"] = field["response_mask"]
            field["input_ids"] = input_ids
            field["position_ids"] = position_ids
            field["multi_modal_inputs"] = multi_modal_inputs
            keys.append(f"{uid}_{session_id}_{i}")
            fields.append(field)
            prompt_len, response_len = field["prompts"].size(0), field["responses"].size(0)
            tags.append(
                {
                    "status": "success",
                    "prompt_len": prompt_len,
                    "response_len": response_len,
                    "seq_len": prompt_len + response_len,
                    "global_steps": kwargs["global_steps"],
                    "min_global_steps": field["extra_fields"].get("min_global_steps"),
                    "max_global_steps": field["extra_fields"].get("max_global_steps"),
                }
            )
        return {"keys": keys, "fields": list_of_dict_to_tensordict(fields), "tags": tags}


TreeAgentLoopWorkerTQ = ray.remote(TreeAgentLoopWorker)


class TreeAgentLoopManager(AgentLoopManagerTQ):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # sets verl's worker class; ours replaces it
        self.agent_loop_workers_class = TreeAgentLoopWorkerTQ

"""`trainer.v1.trainer_mode=tree_sync`: verl's synchronous v1 trainer plus per-step tree metrics.

Everything verl's `sync` trainer does is unchanged; after its metrics, this adds `tree/*`
(treerpo.tree_metrics): shape, stop reasons, generated vs flat-equivalent tokens, prefix-cache
hits, and the fraction of step-level groups whose values all agree (no learning signal).
"""

from __future__ import annotations

import numpy as np
import transfer_queue as tq
from omegaconf import open_dict
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from treerpo import node_table, topology
from treerpo.tree_metrics import aggregate, zero_variance_group_fraction
from verl_ext.tree_config import advantage_options, rollout_options


def tree_metrics(extra_fields: list, uids: list, leaf_rewards, response_mask, value_rule: str) -> dict:
    """`tree/*` metrics from the rows of one step (rows of flat samples are skipped)."""
    metrics = aggregate(ef["tree_stats"] for ef in extra_fields if isinstance(ef, dict) and "tree_stats" in ef)
    rows = [i for i, u in enumerate(uids) if isinstance(u, str) and topology.SEP + topology.FORMAT + topology.SEP in u]
    if rows:
        table = node_table.build([uids[i] for i in rows], response_mask[rows])
        metrics["tree/zero_variance_group_frac"] = zero_variance_group_fraction(table, leaf_rewards[rows], value_rule)
    return metrics


@register_trainer("tree_sync")
class TreeSyncTrainer(PPOTrainerSync):
    """verl's `sync` trainer with two tree-specific changes:

    * mini-batch arithmetic: verl sizes an actor mini-batch as `ppo_mini_batch_size * rollout.n`
      rows, i.e. prompts times samples per prompt. A tree run has rollout.n = 1 and
      `tree.rollout` leaves per prompt, so here the multiplier is the leaves per tree: the
      mini-batch is `ppo_mini_batch_size` prompts' worth of leaves, as in a GRPO run with
      n = leaves (README, "Mini-batch arithmetic").
    * `tree/*` metrics after verl's own.
    """

    def _update_actor(self, batch, metrics):
        leaves = rollout_options(self.config).leaves_per_tree
        rollout = self.config.actor_rollout_ref.rollout
        if rollout.agent.default_agent_loop != "tree_agent" or rollout.n != 1:
            return super()._update_actor(batch, metrics)
        with open_dict(rollout):
            rollout.n = leaves  # read by verl's _update_actor only as the mini-batch multiplier
            try:
                return super()._update_actor(batch, metrics)
            finally:
                rollout.n = 1

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["extra_fields", "uid", "rm_scores", "response_mask"])
        extra = data.pop("extra_fields").tolist()
        uids = np.array(data.pop("uid").tolist(), dtype=object).tolist()
        padded = data.to_padded_tensor()
        rewards = padded["rm_scores"].sum(-1)
        metrics.update(tree_metrics(extra, uids, rewards, padded["response_mask"],
                                    advantage_options(self.config).value_rule))

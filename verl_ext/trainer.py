"""`trainer.v1.trainer_mode=tree_sync`: verl's synchronous v1 trainer plus per-step tree metrics.

Everything verl's `sync` trainer does is unchanged; after its metrics, this adds `tree/*`
(verl_ext.tree_metrics): shape, stop reasons, generated vs flat-equivalent tokens, prefix-cache
hits, and the fraction of step-level groups whose values all agree (no learning signal).
"""

from __future__ import annotations

import math

import numpy as np
import transfer_queue as tq
from omegaconf import open_dict
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from treerpo.training.microbatch import rank_layout
from treerpo.tree import node_table, topology
from verl_ext.tree_metrics import aggregate, zero_variance_group_fraction
from verl_ext.tree_config import advantage_options


def advantage_reward_corr(advantages, response_mask, rewards) -> float:
    """Pearson correlation, over rows, of a row's mean advantage over its response tokens and its
    reward: positive when the signal reaches the rows that earned it (NaN without spread)."""
    mask = response_mask.float()
    mean_adv = (advantages.float() * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    x, y = mean_adv - mean_adv.mean(), rewards.float() - rewards.float().mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def tree_metrics(extra_fields: list, uids: list, leaf_rewards, response_mask, value_rule: str,
                 advantages=None, is_padding=None) -> dict:
    """`tree/*` metrics from the rows of one step. Rows of flat samples and verl's padding rows are
    skipped: verl pads a batch with copies of its first row's fields, extra_fields included
    (verl/trainer/ppo/padding_utils.py, construct_minimal_padding_template), so a padding row can
    carry a copy of a tree's `tree_stats`; it has its own "pad..." uid and the `is_padding` tag."""
    is_padding = is_padding if is_padding is not None else [False] * len(uids)
    rows = [i for i, u in enumerate(uids)
            if not is_padding[i] and isinstance(u, str) and topology.SEP + topology.FORMAT + topology.SEP in u]
    metrics = aggregate(extra_fields[i]["tree_stats"] for i in rows
                        if isinstance(extra_fields[i], dict) and "tree_stats" in extra_fields[i])
    if rows:
        table = node_table.build([uids[i] for i in rows], response_mask[rows])
        metrics["tree/zero_variance_group_frac"] = zero_variance_group_fraction(table, leaf_rewards[rows], value_rule)
        if advantages is not None:
            metrics["tree/adv_reward_corr"] = advantage_reward_corr(advantages[rows], response_mask[rows],
                                                                    leaf_rewards[rows])
    return metrics


def whole_tree_layout(keys: list, tags: list, dp_size: int, per_rank: int) -> tuple[list, int]:
    """Rows per rank with whole trees (`microbatch.rank_layout`) from TransferQueue's row keys
    (`<prompt uid>_<session>_<leaf>`, verl_ext/tree_worker.py) and tags (`seq_len`, `is_padding`);
    rows already padding are spread like trees of one row."""
    groups: dict = {}
    for i, (key, tag) in enumerate(zip(keys, tags)):
        tree = ("pad", i) if tag.get("is_padding") else str(key).rsplit("_", 2)[0]
        groups.setdefault(tree, []).append(i)
    return rank_layout([(tree, rows, sum(int(tags[r]["seq_len"]) for r in rows)) for tree, rows in groups.items()],
                       dp_size, per_rank)


@register_trainer("tree_sync")
class TreeSyncTrainer(PPOTrainerSync):
    """verl's `sync` trainer with two tree-specific changes:

    * mini-batch arithmetic. verl sizes an actor mini-batch as `ppo_mini_batch_size * rollout.n`
      rows (prompts times samples per prompt), so a step makes `train_batch_size /
      ppo_mini_batch_size` updates. A tree run has rollout.n = 1 and a number of leaves per
      prompt that varies (TreeRPO paths that stop early leave fewer than N^D leaves), so the
      step keeps verl's number of updates, U = train_batch_size / ppo_mini_batch_size, and each
      update takes an equal share of the step's leaf rows: `len(batch) / U`. verl's padding
      (`_balance_batch`) pads the batch with no-op rows to a multiple of U x dp size. With full
      trees this is exactly GRPO's `ppo_mini_batch_size x leaves` rows (README, "Mini-batch
      arithmetic").
    * whole trees per data-parallel rank. verl's `_balance_batch` reorders rows so that each rank
      gets a balanced, equal share (trainer_base.py:1626, `equal_size=True`), cutting trees
      across ranks, where their shared segments can no longer be packed together. With more
      than one rank, trees go to ranks whole, balanced in tokens, and every rank is topped up
      with verl's no-op padding rows to the same count (`treerpo.training.microbatch.rank_layout`).
    * `tree/*` metrics after verl's own, including `tree/adv_reward_corr` (the rows' advantages
      against their rewards, read back from TransferQueue as verl's update used them).
    """

    def _is_tree_run(self) -> bool:
        rollout = self.config.actor_rollout_ref.rollout
        return rollout.agent.default_agent_loop == "tree_agent" and rollout.n == 1

    def _updates_per_step(self) -> int:
        actor = self.config.actor_rollout_ref.actor
        return max(1, int(self.config.data.train_batch_size) // int(actor.ppo_mini_batch_size))

    def _get_required_batch_multiple(self, dp_size: int) -> int:
        multiple = super()._get_required_batch_multiple(dp_size)
        if not self._is_tree_run():
            return multiple
        return math.lcm(multiple, self._updates_per_step() * dp_size)

    def _balance_batch(self, batch, metrics, logging_prefix="global_seqlen", keep_minibatch=False):
        dp_size = self._actor_dp_size()
        if not self._is_tree_run() or dp_size == 1:
            return super()._balance_batch(batch, metrics, logging_prefix, keep_minibatch)
        from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
        from verl.utils.seqlen_balancing import log_seqlen_unbalance

        multiple = self._get_required_batch_multiple(dp_size)
        per_rank = multiple // math.gcd(multiple, dp_size)  # dp x per_rank rows divide by `multiple`
        layout, n_pad = whole_tree_layout(batch.keys, batch.tags, dp_size, per_rank)
        first_pad = len(batch)
        if n_pad:  # verl's own no-op rows: exactly n_pad more (its remainder is then len(batch))
            batch = upsample_batch_to_divisible_size(batch, first_pad + n_pad, self.tokenizer.eos_token_id)
        pads = iter(range(first_pad, first_pad + n_pad))
        order = [r if r is not None else next(pads) for rank in layout for r in rank]
        batch.reorder(order)
        seqlens = [int(tag["seq_len"]) for tag in batch.tags]
        size = len(order) // dp_size
        metrics.update(log_seqlen_unbalance(seqlen_list=seqlens, partitions=[list(range(i * size, (i + 1) * size))
                                                                             for i in range(dp_size)],
                                            prefix=logging_prefix))
        metrics["tree/padding_rows_for_ranks"] = float(n_pad)
        return batch

    def _actor_dp_size(self) -> int:
        """The actor's data-parallel size, as verl's `_balance_batch` reads it."""
        wg = self.actor_rollout_wg
        if "actor" not in wg._dispatch_info:
            wg._dispatch_info["actor"] = wg._query_dispatch_info("actor")
        return max(wg._dispatch_info["actor"]) + 1

    def _update_actor(self, batch, metrics):
        if not self._is_tree_run():
            return super()._update_actor(batch, metrics)
        updates = self._updates_per_step()
        if len(batch) % updates:
            raise RuntimeError(f"tree_sync: {len(batch)} rows do not split into {updates} mini-batches "
                               "(_get_required_batch_multiple should have padded them)")
        actor = self.config.actor_rollout_ref.actor
        nominal = actor.ppo_mini_batch_size
        with open_dict(actor):
            actor.ppo_mini_batch_size = len(batch) // updates  # verl multiplies it by rollout.n = 1
            try:
                return super()._update_actor(batch, metrics)
            finally:
                actor.ppo_mini_batch_size = nominal

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["extra_fields", "uid", "rm_scores", "response_mask", "advantages"])
        extra = data.pop("extra_fields").tolist()
        uids = np.array(data.pop("uid").tolist(), dtype=object).tolist()
        padded = data.to_padded_tensor()
        rewards = padded["rm_scores"].sum(-1)
        metrics.update(tree_metrics(extra, uids, rewards, padded["response_mask"],
                                    advantage_options(self.config).value_rule, padded["advantages"],
                                    is_padding=[bool(tag.get("is_padding", False)) for tag in batch.tags]))

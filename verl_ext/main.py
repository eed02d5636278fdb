"""Hydra entry point: verl 0.9.1's PPO trainer with the `tree` config group.

    python -m verl_ext.main data.train_files=... actor_rollout_ref.model.path=... tree.rollout.method=treepo

Config: verl_ext/config/tree_ppo_trainer.yaml (verl's ppo_trainer + `tree`). Multi-node runs work
as verl's do: start a Ray cluster, then launch this on the head node with trainer.nnodes=N.
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from verl_ext.plugin import PACK_ENV
from verl_ext.tree_config import advantage_options, rollout_options, train_pack


def check_config(config: DictConfig) -> None:
    """verl's own validation, then the tree group's (unknown keys and bad values raise)."""
    from verl.trainer.main_ppo import auto_set_device
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    opts = rollout_options(config)
    advantage_options(config)
    train_pack(config)
    rollout = config.actor_rollout_ref.rollout
    if rollout.agent.default_agent_loop == "tree_agent":
        if rollout.n != 1:
            raise ValueError(f"tree_agent samples one tree per prompt: set actor_rollout_ref.rollout.n=1 "
                             f"(got {rollout.n}); the leaves per prompt are tree.rollout's ({opts.leaves_per_tree})")
        if rollout.get("full_determinism"):
            raise ValueError(
                "actor_rollout_ref.rollout.full_determinism=True cannot be combined with tree sampling: under it "
                "verl passes the caller's request_id straight to vLLM (verl/workers/rollout/llm_server.py:94), and a tree "
                "sends its sibling segments concurrently under one request_id, so they would collide. "
                "Set full_determinism=False (tree sampling is seeded by tree.rollout.seed)")
        if rollout.agent.get("agent_loop_manager_class") != "verl_ext.tree_worker.TreeAgentLoopManager":
            raise ValueError("tree_agent needs actor_rollout_ref.rollout.agent.agent_loop_manager_class="
                             "verl_ext.tree_worker.TreeAgentLoopManager (it scores each leaf on its own)")
    if config.algorithm.adv_estimator in ("treerpo", "treepo") and rollout.agent.default_agent_loop != "tree_agent":
        raise ValueError(f"algorithm.adv_estimator={config.algorithm.adv_estimator} needs tree rows: set "
                         "actor_rollout_ref.rollout.agent.default_agent_loop=tree_agent")


def trim_tree_dump(config: DictConfig) -> None:
    """On a resume (verl's trainer.resume_mode=auto, its default, with a checkpoint tracker in
    trainer.default_local_dir): drop the tree dump's records of steps after the checkpoint, which
    the resumed run samples again, so that every step's trees appear once."""
    dump = config.get("tree", {}).get("rollout", {}).get("dump_path")
    if not dump or config.trainer.get("resume_mode", "auto") != "auto":
        return
    tracker = os.path.join(str(config.trainer.default_local_dir), "latest_checkpointed_iteration.txt")
    try:
        step = int(open(tracker).read().strip())
    except (OSError, ValueError):
        return  # no checkpoint: verl starts from step 0 and appends
    from treerpo.tree.record import keep_steps

    keep_steps(dump, step)


@hydra.main(config_path="config", config_name="tree_ppo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo

    check_config(config)
    trim_tree_dump(config)
    if train_pack(config):
        # read by verl_ext.plugin in every process Ray starts from here (environment inherited,
        # as verl passes VERL_FULL_DETERMINISM, verl/trainer/main_ppo.py:47)
        os.environ[PACK_ENV] = "1"
    run_ppo(config, task_runner_class=TaskRunnerV1)


if __name__ == "__main__":
    from treerpo import quiet

    quiet.install()  # third-party warnings off unless TREERPO_VERBOSE=1 (treerpo/quiet.py)
    main()

#!/usr/bin/env bash
# GRPO baseline, Qwen2.5-Math-1.5B, one node of 8 GPUs (80 GB each; ~40 GB used per GPU at these sizes).
# 128 prompts x 16 samples = 2048 rows per step, responses up to 3072 tokens; flat sampling
# (single_turn_agent) and verl's own `grpo` estimator, so the only difference from the tree runs
# below is the sampler and the advantage. Time per step: not yet measured by this project.
source "$(dirname "$0")/../common.sh"
EXP_NAME=${EXP_NAME:-qwen2.5-math-1.5b-grpo}
launch \
  algorithm.adv_estimator=grpo \
  actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent \
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=null \
  trainer.v1.trainer_mode=sync \
  actor_rollout_ref.rollout.n=16 \
  data.train_batch_size=128 \
  data.max_response_length=3072 \
  actor_rollout_ref.rollout.response_length=3072 \
  actor_rollout_ref.actor.ppo_mini_batch_size=32 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576 \
  trainer.experiment_name="$EXP_NAME" "$@"

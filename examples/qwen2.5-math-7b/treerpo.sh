#!/usr/bin/env bash
# TreeRPO, Qwen2.5-Math-7B, one node of 8 GPUs (80 GB each; FSDP with parameter and optimizer
# offload, vLLM with tensor parallel 2). Shape N=4, D=3, L_step=384 as the 1.5B script;
# 32 prompts x 64 leaves = 2048 rows per step. Time per step: not yet measured by this project.
source "$(dirname "$0")/../common.sh"
EXP_NAME=${EXP_NAME:-qwen2.5-math-7b-treerpo}
launch \
  algorithm.adv_estimator=treerpo \
  tree.rollout.method=treerpo \
  tree.rollout.branching=4 tree.rollout.depth=3 tree.rollout.step_tokens=384 \
  data.train_batch_size=32 \
  data.max_response_length=1152 \
  actor_rollout_ref.rollout.response_length=1152 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
  actor_rollout_ref.actor.fsdp_config.param_offload=True \
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=True \
  actor_rollout_ref.actor.ppo_mini_batch_size=8 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
  trainer.experiment_name="$EXP_NAME" "$@"

#!/usr/bin/env bash
# TreePO at the paper's setting, Qwen2.5-7B (base): d=14 segments x l=512 tokens (7168-token
# responses), b=2, w=16 leaves, k0=2. DAPO-style: no KL, clip 0.2/0.28, reward +1/-1. The paper
# trained on 64 GPUs; one node of 8 x 80 GB runs it with TP 2 for vLLM and FSDP offload at
# 64 prompts x 16 leaves = 1024 rows per step. Time per step: not yet measured by this project.
source "$(dirname "$0")/../common.sh"
EXP_NAME=${EXP_NAME:-qwen2.5-7b-treepo}
launch \
  algorithm.adv_estimator=treepo \
  tree.rollout.method=treepo \
  tree.rollout.leaves=16 tree.rollout.branch=2 tree.rollout.segment_tokens=512 tree.rollout.max_segments=14 \
  tree.rollout.init_branches=[2,2] \
  +reward.custom_reward_function.reward_kwargs.incorrect_score=-1.0 \
  actor_rollout_ref.actor.use_kl_loss=False \
  actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28 \
  data.train_batch_size=64 \
  data.max_response_length=7168 \
  actor_rollout_ref.rollout.response_length=7168 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
  actor_rollout_ref.actor.fsdp_config.param_offload=True \
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=True \
  actor_rollout_ref.actor.ppo_mini_batch_size=16 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
  trainer.experiment_name="$EXP_NAME" "$@"

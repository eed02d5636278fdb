#!/usr/bin/env bash
# TreePO, Qwen2.5-Math-1.5B, one node of 8 GPUs (80 GB each).
# w=16 leaves per prompt (as the GRPO baseline's n=16), b=2, segments of l=512 tokens, d=6
# (3072 tokens, the baseline's maximum response), k0=2 fixed. DAPO-style loss as the paper: no KL,
# clip 0.2/0.28, reward +1/-1. 128 prompts x 16 leaves = 2048 rows per step.
# Time per step: not yet measured by this project.
source "$(dirname "$0")/../common.sh"
EXP_NAME=${EXP_NAME:-qwen2.5-math-1.5b-treepo}
launch \
  algorithm.adv_estimator=treepo \
  tree.rollout.method=treepo \
  tree.rollout.leaves=16 tree.rollout.branch=2 tree.rollout.segment_tokens=512 tree.rollout.max_segments=6 \
  tree.rollout.init_branches=[2,2] \
  +reward.custom_reward_function.reward_kwargs.incorrect_score=-1.0 \
  actor_rollout_ref.actor.use_kl_loss=False \
  actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28 \
  data.train_batch_size=128 \
  data.max_response_length=3072 \
  actor_rollout_ref.rollout.response_length=3072 \
  actor_rollout_ref.actor.ppo_mini_batch_size=32 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576 \
  trainer.experiment_name="$EXP_NAME" "$@"

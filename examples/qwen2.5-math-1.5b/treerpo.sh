#!/usr/bin/env bash
# TreeRPO, Qwen2.5-Math-1.5B, one node of 8 GPUs (80 GB each).
# Shape N=4, D=3, L_step=384: 64 leaves and 84 nodes per prompt, paths up to 1152 tokens.
# Why not the paper's N=8 (512 leaves per prompt)? At 64 prompts per step that is 32768 rows,
# more than one node trains in reasonable time; N=4 keeps D=3 and L_step=384 (the paper's)
# and 64 x 64 = 4096 leaves per step. Decoded tokens per full tree: 384 x 84 = 32256, vs
# 64 x 1152 = 73728 for flat sampling of the same leaves (ALGORITHMS.md section 3).
# Mini-batch: 16 prompts' leaves (1024 rows), 4 updates per step (README, mini-batch arithmetic).
# Time per step: not yet measured by this project.
source "$(dirname "$0")/../common.sh"
EXP_NAME=${EXP_NAME:-qwen2.5-math-1.5b-treerpo}
launch \
  algorithm.adv_estimator=treerpo \
  tree.rollout.method=treerpo \
  tree.rollout.branching=4 tree.rollout.depth=3 tree.rollout.step_tokens=384 \
  tree.advantage.norm=batch tree.advantage.tau=0.1 \
  data.train_batch_size=64 \
  data.max_response_length=1152 \
  actor_rollout_ref.rollout.response_length=1152 \
  actor_rollout_ref.actor.ppo_mini_batch_size=16 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576 \
  trainer.experiment_name="$EXP_NAME" "$@"

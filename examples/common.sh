# Shared settings of the GPU launch scripts; sourced, not run. Everything comes from the environment:
#   MODEL_PATH   local path or hub name of the base model
#   DATA_DIR     output of examples/prepare_data.sh (train.parquet, math500.parquet, ...)
#   NNODES       nodes in the Ray cluster (default 1); N_GPUS_PER_NODE (default 8)
#   CKPT_DIR     checkpoints (default ./checkpoints); PROJECT, EXP_NAME for the logger
#   CHECK_ONLY=1 compose and validate the config (python -m verl_ext.check), launch nothing
set -euo pipefail
: "${MODEL_PATH:?set MODEL_PATH to the base model (local path or hub name)}"
: "${DATA_DIR:?set DATA_DIR to the output of examples/prepare_data.sh}"
NNODES=${NNODES:-1}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE:-8}
CKPT_DIR=${CKPT_DIR:-./checkpoints}
PROJECT=${PROJECT:-treerpo}
PYTHON=${PYTHON:-python3}
ENTRY=verl_ext.main
[ "${CHECK_ONLY:-0}" = "1" ] && ENTRY=verl_ext.check

VAL_FILES="[$DATA_DIR/math500.parquet,$DATA_DIR/aime24.parquet,$DATA_DIR/amc23.parquet,$DATA_DIR/minerva.parquet,$DATA_DIR/olympiadbench.parquet]"

# verl's GRPO recipe for Qwen2.5-Math (KL loss 0.001 low_var_kl, token-mean, lr 1e-6), FSDP + vLLM.
COMMON=(
  data.train_files="$DATA_DIR/train.parquet"
  data.val_files="$VAL_FILES"
  data.max_prompt_length=1024
  data.filter_overlong_prompts=True
  data.truncation=error
  actor_rollout_ref.model.path="$MODEL_PATH"
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.use_dynamic_bsz=True
  actor_rollout_ref.actor.use_kl_loss=True
  actor_rollout_ref.actor.kl_loss_coef=0.001
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.loss_agg_mode=token-mean
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.tensor_model_parallel_size=1
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.enable_prefix_caching=True
  actor_rollout_ref.rollout.temperature=1.0
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True
  actor_rollout_ref.rollout.val_kwargs.temperature=0.6
  actor_rollout_ref.rollout.val_kwargs.do_sample=True
  actor_rollout_ref.rollout.val_kwargs.n=4
  trainer.project_name="$PROJECT"
  trainer.default_local_dir="$CKPT_DIR/${EXP_NAME:-run}"
  trainer.logger='["console"]'
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$N_GPUS_PER_NODE"
  trainer.save_freq=50
  trainer.test_freq=25
  trainer.total_epochs=10
)

launch() { exec "$PYTHON" -m "$ENTRY" "${COMMON[@]}" "$@"; }

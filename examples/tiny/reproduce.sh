#!/usr/bin/env bash
# Miniature reproduction on CPU: GRPO vs TreeRPO vs TreePO on the bundled arithmetic task with a
# tiny Qwen2, 3 seeds each, at an equal budget of generated RL tokens. Per seed one supervised
# warm-up is shared by the three estimators (same starting policy). Writes $OUT/results.md
# (final accuracy mean and std, tokens, response length) and $OUT/learning_curves.png.
#   bash examples/tiny/reproduce.sh                 # about 20 minutes on 2 CPU cores
#   SEEDS="0 1" TOKEN_BUDGET=100000 OUT=runs/x bash examples/tiny/reproduce.sh
# QUICK=1: one seed and two RL steps of a smaller model (what the tests run).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-runs/tiny}
SEEDS=${SEEDS:-0 1 2}
TOKEN_BUDGET=${TOKEN_BUDGET:-60000}
EXTRA=()
if [ "${QUICK:-0}" = "1" ]; then
  SEEDS=0
  EXTRA=(hidden=32 layers=1 heads=2 kv_heads=1 intermediate=64 warm_max_steps=4 warm_eval_every=2 warm_batch=8
         prompts_per_step=3 leaves=4 depth=2 max_rl_steps=2 eval_every=1 eval_problems=8)
fi
mkdir -p "$OUT"
for seed in $SEEDS; do
  "$PY" -m verl_ext.cli train --estimator grpo --seed "$seed" --out "$OUT/warmup-seed$seed" max_rl_steps=0 \
    "${EXTRA[@]}" 2>"$OUT/warmup-seed$seed.log" >/dev/null
  for est in grpo treerpo treepo; do
    echo "seed $seed: $est"
    "$PY" -m verl_ext.cli train --estimator "$est" --seed "$seed" --out "$OUT/$est-seed$seed" \
      init_from="$OUT/warmup-seed$seed/checkpoints/warmup" token_budget="$TOKEN_BUDGET" "${EXTRA[@]}" \
      2>"$OUT/$est-seed$seed.log" >/dev/null
  done
done
"$PY" -m verl_ext.report "$OUT"

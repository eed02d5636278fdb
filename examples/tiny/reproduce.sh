#!/usr/bin/env bash
# Miniature reproduction on CPU with verl's real trainer: GRPO vs TreeRPO vs TreePO on the bundled
# arithmetic task with a tiny Qwen2, several seeds, each seed's three runs starting from one
# shared supervised warm-up. Each run is `treerpo train` (verl_ext.main +preset=cpu, 16 steps, about
# 9-11 minutes on 2 cores). Writes $OUT/<estimator>-seed<k>/ per run, then $OUT/results.md
# (held-out accuracy before and after, mean and std over seeds) and $OUT/learning_curves.png.
#   bash examples/tiny/reproduce.sh                       # 3 seeds x 3 estimators, about 90 minutes
#   SEEDS="0 1" STEPS=24 OUT=runs/x bash examples/tiny/reproduce.sh
# CHECK_ONLY=1: compose and validate every run's config (what the tests run), launch nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-runs/tiny}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-16}
ESTIMATORS=${ESTIMATORS:-grpo treerpo treepo}
mkdir -p "$OUT"
for seed in $SEEDS; do
  for est in $ESTIMATORS; do
    args=(train --estimator "$est" --seed "$seed" --steps "$STEPS" --out "$OUT/$est-seed$seed")
    if [ "${CHECK_ONLY:-0}" = "1" ]; then
      "$PY" -m treerpo.cli "${args[@]}" --check-only
      continue
    fi
    echo "seed $seed: $est"
    "$PY" -m treerpo.cli "${args[@]}" | tail -2
  done
done
[ "${CHECK_ONLY:-0}" = "1" ] || "$PY" -m treerpo.tiny.report "$OUT"

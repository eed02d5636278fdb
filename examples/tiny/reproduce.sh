#!/usr/bin/env bash
# The miniature reproduction on CPU with verl's real trainer: GRPO vs TreeRPO vs TreePO on the
# `chains` task (3-5 operations; validation sets chain3, chain4, chain5 and chain6, longer than any
# training chain), a tiny Qwen2, 5 seeds, each seed's three runs from one warm-up and one data order.
# Each run is `treerpo train --task chains` (6-10 minutes on 2 cores with AVX-512); the whole grid
# takes about 2.5 hours there. Finished runs are skipped, so the command can be stopped and run again; `--resume` also
# continues an unfinished run from its last checkpoint. It ends with the report: $OUT/results.md
# (the tables with 95% CIs over seeds, paired by seed), $OUT/curves.png, $OUT/runs.json.
#   bash examples/tiny/reproduce.sh                       # runs/chains, seeds 0-4
#   bash examples/tiny/reproduce.sh --resume
#   SEEDS="0 1" OUT=runs/x bash examples/tiny/reproduce.sh
# CHECK_ONLY=1: compose and validate every run's config (what CI runs), launch nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-runs/chains}
SEEDS=${SEEDS:-0 1 2 3 4}
ESTIMATORS=${ESTIMATORS:-grpo treerpo treepo}
args=(--out "$OUT" --seeds $SEEDS --estimators $ESTIMATORS)
if [ "${CHECK_ONLY:-0}" = "1" ]; then
  exec "$PY" -m treerpo.tiny.grid "${args[@]}" --check-only
fi
exec "$PY" -m treerpo.tiny.grid "${args[@]}" "$@"

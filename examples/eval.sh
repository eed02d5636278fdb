#!/usr/bin/env bash
# Evaluate checkpoints (HF format: verl's checkpoint merged with `python -m verl.model_merger`)
# on the benchmarks and print the papers' table for each, then a side-by-side comparison of
# the first two. One GPU with vLLM per checkpoint; falls back to transformers without vLLM.
#   CKPTS="path/to/grpo path/to/treerpo" DATA_DIR=... bash examples/eval.sh
# K (samples per problem, default 16), TEMPERATURE (0.6), MAX_TOKENS (3072), OUT (runs/eval), ENGINE (auto)
set -euo pipefail
: "${CKPTS:?set CKPTS to one or more checkpoint directories or hub names}"
: "${DATA_DIR:?set DATA_DIR to the output of examples/prepare_data.sh}"
PYTHON=${PYTHON:-python3}
OUT=${OUT:-runs/eval}
BENCHES=${BENCHES:-math500 aime24 amc23 minerva olympiadbench}
files=()
for b in $BENCHES; do files+=("$DATA_DIR/$b.parquet"); done
dirs=()
for c in $CKPTS; do
  d="$OUT/$(basename "$c")"
  "$PYTHON" -m treerpo.tools.evaluate --model "$c" --data "${files[@]}" --k "${K:-16}" --temperature "${TEMPERATURE:-0.6}" \
    --max-tokens "${MAX_TOKENS:-3072}" --engine "${ENGINE:-auto}" --seed "${SEED:-0}" --out "$d"
  dirs+=("$d")
done
if [ "${#dirs[@]}" -ge 2 ]; then
  "$PYTHON" -m treerpo.tools.evaluate --compare "${dirs[0]}" "${dirs[1]}"
fi

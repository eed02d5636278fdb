#!/usr/bin/env bash
# Evaluate checkpoints (HF format: verl's checkpoint merged with `python -m verl.model_merger`)
# on the benchmarks (MATH-500, AIME24, AMC23, Minerva, OlympiadBench) and print each one's table,
# then the papers' table over all of them: methods as rows, avg@k with 95% intervals per
# benchmark, the average and the response length, and each method minus the baseline with a
# paired test (python -m treerpo.tools.eval_table). One GPU with vLLM per checkpoint; falls back
# to transformers without vLLM.
#   CKPTS="path/to/grpo path/to/treerpo path/to/treepo" DATA_DIR=... bash examples/eval.sh
#   LABELS="GRPO TreeRPO TreePO" ...   (row names, one per checkpoint; default: the folder names)
# K (samples per problem, default 16), TEMPERATURE (0.6), MAX_TOKENS (3072), OUT (runs/eval), ENGINE (auto),
# BASELINE (the label the others are compared with; default GRPO when there is one, else the first)
set -euo pipefail
: "${CKPTS:?set CKPTS to one or more checkpoint directories or hub names}"
: "${DATA_DIR:?set DATA_DIR to the output of examples/prepare_data.sh}"
PYTHON=${PYTHON:-python3}
OUT=${OUT:-runs/eval}
BENCHES=${BENCHES:-math500 aime24 amc23 minerva olympiadbench}
files=()
for b in $BENCHES; do files+=("$DATA_DIR/$b.parquet"); done
dirs=()
labels=(${LABELS:-})
for c in $CKPTS; do
  d="$OUT/$(basename "$c")"
  "$PYTHON" -m treerpo.tools.evaluate --model "$c" --data "${files[@]}" --k "${K:-16}" --temperature "${TEMPERATURE:-0.6}" \
    --max-tokens "${MAX_TOKENS:-3072}" --engine "${ENGINE:-auto}" --seed "${SEED:-0}" --out "$d"
  dirs+=("$d")
done
runs=()
for i in "${!dirs[@]}"; do
  runs+=("${labels[$i]:-$(basename "${dirs[$i]}")}=${dirs[$i]}")
done
"$PYTHON" -m treerpo.tools.eval_table "${runs[@]}" ${BASELINE:+--baseline "$BASELINE"} --out "$OUT/table.md"

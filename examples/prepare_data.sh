#!/usr/bin/env bash
# Prepare the training set (MATH levels 3-5) and the evaluation sets into $DATA_DIR (CPU only, minutes).
# Extra arguments go to data_prep.prepare, e.g. --local math=/path/train.jsonl for offline copies.
set -euo pipefail
: "${DATA_DIR:?set DATA_DIR to the output directory}"
exec "${PYTHON:-python3}" -m data_prep.prepare --out "$DATA_DIR" --train math --levels 3,4,5 \
  --eval math500,aime24,amc23,minerva,olympiadbench,gsm8k "$@"

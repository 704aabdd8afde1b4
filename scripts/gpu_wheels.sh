#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu.sh installs on the GPU machine (scripts/gpu_wheels.txt:
# the project's dependencies its image lacks) into a git-ignored folder, default .whl/.
#
#   scripts/gpu_wheels.sh                 # .whl/, for the image's CPython 3.12 on x86-64 Linux
#   GPU_PY_VERSION=3.11 scripts/gpu_wheels.sh DIR        # another Python, another folder
#
# Binary wheels only (pydantic-core is compiled), no dependencies resolved: the list names every
# wheel. The folder is replaced as a whole, so it never holds two versions of one package (pip
# refuses to install such a set). Needs a package index (pip's); the GPU machine needs none.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PYV=${GPU_PY_VERSION:-3.12}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3); fi
fi
tmp="$DEST.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
# manylinux tags: pip matches each exactly; these cover pydantic-core's wheels for x86-64
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$tmp" -r scripts/gpu_wheels.txt
want=$(grep -cE '^[A-Za-z]' scripts/gpu_wheels.txt)
got=$(ls "$tmp"/*.whl | wc -l)
if [ "$got" != "$want" ]; then
  echo "gpu_wheels: expected $want wheels, got $got in $tmp" >&2
  exit 1
fi
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "gpu_wheels: $got wheels for CPython $PYV in $DEST ($(du -sh "$DEST" | cut -f1)):"
ls "$DEST"

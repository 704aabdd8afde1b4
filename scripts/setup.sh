#!/usr/bin/env bash
# Sets up lossbench in ./.venv (Python >= 3.11) and, where it can, installs Debian's Fashion-MNIST.
# Idempotent: a second run only checks. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python >= 3.11 is required (apt-get install python3.11 python3.11-venv)" >&2; exit 2; }

apt_install() {  # best effort: root or passwordless sudo, else say what to run
  local pkgs=("$@") sudo=""
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo="sudo -n"; } || true
  if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 || {
      $sudo apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1; } || \
      echo "setup: could not apt-get install ${pkgs[*]} (continuing)" >&2
  else
    echo "setup: not root; run 'sudo apt-get install ${pkgs[*]}' for the real data" >&2
  fi
}

if command -v apt-get >/dev/null 2>&1; then
  [ -d /usr/share/datasets/fashion-mnist ] || apt_install dataset-fashion-mnist
  # pdflatex + booktabs: the tests compile the LaTeX tables the report renders
  command -v pdflatex >/dev/null 2>&1 || apt_install --no-install-recommends texlive-latex-base texlive-latex-recommended
  "$PY" -c 'import ensurepip' 2>/dev/null || apt_install "$(basename "$PY")-venv"
fi

if [ ! -x .venv/bin/python ]; then
  # --system-site-packages: reuse a torch that is already installed instead of downloading it again
  "$PY" -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q -e ".[test,ray,slurm,trackers]"
echo "setup: ok ($(.venv/bin/python -c 'import torch, sys; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")'))"

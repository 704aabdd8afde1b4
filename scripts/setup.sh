#!/usr/bin/env bash
# Sets up lossbench in ./.venv (Python >= 3.11) and, where it can, installs Debian's Fashion-MNIST.
#   bash scripts/setup.sh            what `bench run` and `bench report` need (the quick start)
#   bash scripts/setup.sh --test     and what the tests need: their extras (see TEST_EXTRAS), pdflatex and Chromium
#   bash scripts/setup.sh --dry-run  print the apt-get and pip commands it would run, run nothing
# Idempotent: a second run only checks. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The extras the test command installs: pytest, the launchers the tests drive (Ray; SLURM through
# submitit) and the trackers they read back. A new extra the tests need goes here; the quick start
# installs none of them.
TEST_EXTRAS=(test ray slurm trackers)

test=0 dry=0
for arg in "$@"; do
  case "$arg" in
    --test) test=1 ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,5p' "$0" | cut -c3-; exit 0 ;;
    *) echo "setup: unknown option '$arg'; use --test (also install what the tests need) and/or --dry-run" >&2; exit 2 ;;
  esac
done

run() {  # a command, or with --dry-run only its text (quoted where a shell would expand it)
  if [ "$dry" = 1 ]; then
    local words=() w
    for w in "$@"; do case "$w" in *[][*?\ ]*) words+=("\"$w\"") ;; *) words+=("$w") ;; esac; done
    echo "${words[*]}"
  else
    "$@"
  fi
}

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
  if [ "$dry" = 1 ]; then
    echo "${sudo:+$sudo }apt-get install -y -q ${pkgs[*]}"
  elif [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 || {
      $sudo apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1; } || \
      echo "setup: could not apt-get install ${pkgs[*]} (continuing)" >&2
  else
    echo "setup: not root; run 'sudo apt-get install ${pkgs[*]}'" >&2
  fi
}

if command -v apt-get >/dev/null 2>&1; then
  [ -d /usr/share/datasets/fashion-mnist ] || apt_install dataset-fashion-mnist
  if [ "$test" = 1 ]; then
    # pdflatex + booktabs: the tests compile the LaTeX tables the report renders
    command -v pdflatex >/dev/null 2>&1 || apt_install --no-install-recommends texlive-latex-base texlive-latex-recommended
    # Chromium and its driver: the results page's tests open it in a headless browser (selenium)
    command -v chromium >/dev/null 2>&1 || apt_install chromium chromium-driver
  fi
  "$PY" -c 'import ensurepip' 2>/dev/null || apt_install "$(basename "$PY")-venv"
fi

if [ ! -x .venv/bin/python ]; then
  # --system-site-packages: reuse a torch that is already installed instead of downloading it again
  run "$PY" -m venv --system-site-packages .venv
fi
if [ "$test" = 1 ]; then
  target=".[$(IFS=,; echo "${TEST_EXTRAS[*]}")]"
else
  target="."
fi
run .venv/bin/python -m pip install -q -e "$target"
[ "$dry" = 1 ] && exit 0
echo "setup: ok ($(.venv/bin/python -c 'import torch, sys; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")'))"

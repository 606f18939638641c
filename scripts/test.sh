#!/usr/bin/env bash
# Runs the whole test suite: unit, property and parity tests, the course toolchain, and every
# tutorial and solution notebook top to bottom (nbmake). Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import minivdm, pytest, nbmake, playwright" 2>/dev/null; then
  bash scripts/setup.sh --no-demo
fi
export MPLBACKEND=Agg HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0
if [ "$#" -eq 0 ]; then
  paths=(tests)
  for folder in tutorials solutions; do
    if compgen -G "$folder/*.ipynb" >/dev/null; then paths+=("$folder"); fi
  done
  set -- "${paths[@]}" --nbmake --nbmake-timeout=300 --durations=10
fi
exec .venv/bin/python -m pytest "$@"

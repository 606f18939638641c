#!/usr/bin/env bash
# Sets up minivdm in a virtual environment inside the repo (.venv), then runs the main job on the
# shipped tiny models. Usage: bash scripts/setup.sh [--no-demo]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
pip_install() {
  # this machine's pip config names local mirrors; their "is ignored" notes are noise
  .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned to the CPU wheel, so that nothing later pulls a CUDA build.
pip_install "torch==2.13.0" || pip_install "torch>=2.2" --index-url https://download.pytorch.org/whl/cpu
pip_install -e ".[dev]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
# tesseract OCR: the curation chapter compares its text detector with it (tests skip when it is missing).
if ! command -v tesseract >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -qq tesseract-ocr >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tesseract-ocr; } >/dev/null 2>&1) \
    || echo "note: could not install tesseract-ocr; its comparison tests will be skipped"
fi
# Chromium: tests/test_browser.py opens a tutorial in JupyterLab in it, through playwright (from the [dev]
# extra, which drives this system browser: no `playwright install` download). Skipped when it is missing.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1) \
      || echo "note: could not install chromium; the real-browser test will be skipped"
  else
    echo "note: chromium is not installed (needs root and apt-get here); the real-browser test will be skipped"
  fi
fi

if [ "${1:-}" != "--no-demo" ]; then
  .venv/bin/python -m minivdm demo --out outputs/demo
fi

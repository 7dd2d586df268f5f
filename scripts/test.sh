#!/usr/bin/env bash
# Installs, then runs the whole test suite (CPU only; DeepSpeed runs for real with gloo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python -m pytest -q tests "$@"

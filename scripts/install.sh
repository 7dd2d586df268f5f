#!/usr/bin/env bash
# Installs the pinned dependencies and this repo's uni_sign_ext package.
# torch is installed first and on its own so that no later step pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "$(grep '^torch==' requirements.txt)"
python -m pip install -q -r requirements.txt
python -m pip install -q -r requirements-test.txt  # test-only: decord, upstream's decoder (see the file)
python -m pip install -q --no-deps -e .

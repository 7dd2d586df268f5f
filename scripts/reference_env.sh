#!/usr/bin/env bash
# A second Python for the RGB reference tests (tests/test_rgb_reference.py, tests/test_rgb_data_reference.py):
# upstream's RGB path imports torchvision (and einops), and PyPI's torchvision does not import beside the CPU
# torch this project pins. decord (requirements-test.txt's pin) is upstream's decoder: with it the runner
# (tests/rgb_reference_runner.py) runs upstream's own decoding, not the PyAV stand-in.
# Builds .venv_tv/ in the repo (git-ignored), which those tests find by default.
#   bash scripts/reference_env.sh && .venv_tv/bin/python -m pytest tests/test_rgb_reference.py
set -euo pipefail
cd "$(dirname "$0")/.."
python -m venv .venv_tv
.venv_tv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 "$(grep '^transformers==' requirements.txt)" \
    "$(grep '^av==' requirements.txt)" sentencepiece sacrebleu numpy pillow einops protobuf pytest \
    -r requirements-test.txt
.venv_tv/bin/pip install -q --no-deps -e .

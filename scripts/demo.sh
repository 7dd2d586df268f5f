#!/usr/bin/env bash
# Installs, then trains pose-only and with descriptions on the informative mini-world (sentence pairs share a
# motion; only the descriptions tell them apart) under DeepSpeed, same seed and budget, and prints both
# results and the withheld ablation side by side. A few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# fp32 on CPU (CPUs without native bf16 run it ~30x slower); the recipe is uni_sign_ext/study.py.
python -m uni_sign_ext.study --work "${OUT:-out/demo}"

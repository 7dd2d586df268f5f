#!/usr/bin/env bash
# Installs, builds the offline mini-world, trains with descriptions under DeepSpeed, then evaluates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
WORLD=${WORLD:-mini_world}
OUT=${OUT:-out/demo}
python -m uni_sign_ext.fixture --out "$WORLD"
export UNISIGN_ROOT="$WORLD"
# fp32 here: CPUs without native bf16 run it ~30x slower. On GPUs keep the default, --dtype bf16.
COMMON=(--dataset CSL_Daily --batch-size 4 --gradient-accumulation-steps 1 --max_length 64
        --num_workers 1 --dtype fp32 --zero_stage 2 --use_descriptions --output_dir "$OUT")
deepspeed --num_gpus 1 fine_tuning.py "${COMMON[@]}" --epochs 2 --lr 1e-3 --warmup-epochs 0
deepspeed --num_gpus 1 fine_tuning.py "${COMMON[@]}" --eval --finetune "$OUT/checkpoint_1.pth"

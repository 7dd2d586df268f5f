"""Pre-train Uni-Sign on CSL-News under DeepSpeed: stage 1 (pose → mT5 text) and stage 2 (--rgb_support).

    deepspeed pre_training.py --batch-size 16 --gradient-accumulation-steps 8 --epochs 20 --opt AdamW \
        --lr 3e-4 --quick_break 2048 --output_dir out/stage1_pretraining --dataset CSL_News

The flags of upstream's script/train_stage1.sh, unchanged. CSL-News is one JSON list
(data/CSL_News/CSL_News_Labels.json): the first 99 % trains, the last 1 % is dev (best_checkpoint.pth by
BLEU-4) and test. --quick_break N stops each epoch after N steps. The training loop, checkpoints
({'model', 'args', 'epoch'}), --resume and logs are fine_tuning.py's, so best_checkpoint.pth starts stage 3:
`fine_tuning.py --finetune out/stage1_pretraining/best_checkpoint.pth [--use_descriptions]`.
Stage 2 is train_stage2.sh's command: --rgb_support --finetune out/stage1_pretraining/best_checkpoint.pth
(the backbone's ImageNet weights from --rgb_backbone_weights or torchvision's cache: docs/flags.md).
"""
import argparse

import fine_tuning
import utils
from uni_sign_ext.cli import check_pretraining_args
from uni_sign_ext.guards import exit_on_user_error


def main(args):
    check_pretraining_args(args)
    fine_tuning.main(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser("Uni-Sign pre-training", parents=[utils.get_args_parser()])
    with exit_on_user_error():
        main(parser.parse_args())
    utils.leave_distributed()

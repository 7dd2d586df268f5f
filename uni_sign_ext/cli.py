"""The `--use_descriptions` argument group, shared by fine_tuning.py and pre_training_checklist.py."""
import argparse

FUSION_TYPES = ("gating", "cross_attn")


def add_description_args(parser, description_root, feature_cache_dir):
    """Add the description-fusion flags; every default keeps upstream behaviour (fusion off)."""
    group = parser.add_argument_group("action descriptions (new in this fork)")
    group.add_argument("--use_descriptions", action="store_true",
                       help="fuse per-frame action descriptions into the pose features")
    group.add_argument("--desc_dir", default=description_root,
                       help="root holding <Dataset>/ description folders (default: %(default)s)")
    group.add_argument("--text_fusion_type", choices=FUSION_TYPES, default="gating",
                       help="gating: per-frame gate on the aligned text; cross_attn: frames attend "
                            "over the video's descriptions")
    group.add_argument("--text_dropout_p", type=float, default=0.1,
                       help="share of frames whose text is replaced by the mask embedding in training")
    group.add_argument("--mt5_model", default=None,
                       help="mT5 folder for the frozen text encoder (default: --mt5_path)")
    group.add_argument("--text_encoder_freeze", action=argparse.BooleanOptionalAction, default=True,
                       help="keep the text encoder frozen (the only supported mode; on by default)")
    group.add_argument("--fusion_checkpoint", default="",
                       help="load fusion-only weights (keys under text_fusion.) after --finetune")
    group.add_argument("--feature_cache_dir", default=feature_cache_dir,
                       help="where encoded description features are cached; '' keeps them in memory")
    return group


def add_run_args(parser):
    """Flags about the run itself (new in this fork)."""
    group = parser.add_argument_group("runs (new in this fork)")
    group.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --output_dir from its last finished epoch")
    group.add_argument("--ablation_every_epoch", action="store_true",
                       help="also evaluate with descriptions withheld after every epoch (by default only "
                            "with --eval and on the final test: it doubles the cost of beam search)")
    return group


def check_run_args(args):
    if args.resume and not args.output_dir:
        raise SystemExit("--resume needs --output_dir: the folder of the run to continue.")
    if args.resume and args.eval:
        raise SystemExit("--resume continues training; --eval does not train. Drop one of the two flags.")
    if args.ablation_every_epoch and not args.use_descriptions:
        raise SystemExit("--ablation_every_epoch withholds descriptions, but --use_descriptions is off: "
                         "add --use_descriptions, or drop --ablation_every_epoch.")


def check_description_args(args):
    """Reject flag combinations that cannot work, with the fix in the message."""
    if not args.use_descriptions:
        if args.fusion_checkpoint:
            raise SystemExit(f"--fusion_checkpoint {args.fusion_checkpoint} holds description-fusion "
                             "weights, but --use_descriptions is off: add --use_descriptions, or "
                             "drop --fusion_checkpoint to run the upstream pose-only model.")
        return
    if args.task != "SLT":
        raise SystemExit(f"--use_descriptions works with --task SLT only (descriptions are fused for translation; "
                         f"--task {args.task} has no description folders or tests yet): drop --use_descriptions "
                         f"to run --task {args.task}, or use --task SLT.")
    if not 0.0 <= args.text_dropout_p < 1.0:
        raise SystemExit(f"--text_dropout_p must be in [0, 1), got {args.text_dropout_p}")
    if not args.text_encoder_freeze:
        raise SystemExit("--no-text_encoder_freeze is not supported: the description encoder is frozen "
                         "by design (its features are cached once per text). Drop the flag.")


PRETRAINING_DATASETS = ("CSL_News",)


def check_pretraining_args(args):
    """pre_training.py: SLT on CSL-News (stage 1, or stage 2 with --rgb_support); say what to run instead otherwise."""
    if args.dataset not in PRETRAINING_DATASETS:
        raise SystemExit(f"pre_training.py pre-trains on CSL_News (--dataset CSL_News), not {args.dataset}: "
                         f"use fine_tuning.py --dataset {args.dataset} --finetune <stage-1/2 checkpoint>.")
    if args.task != "SLT":
        raise SystemExit(f"pre-training learns translation (--task SLT); --task {args.task} is a fine-tuning "
                         "task: run it with fine_tuning.py --finetune <pre-trained checkpoint>.")
    if args.use_descriptions:
        raise SystemExit("pre-training has no descriptions (stages 1-2): drop --use_descriptions here and add it when "
                         "fine-tuning (fine_tuning.py --finetune <best_checkpoint.pth> --use_descriptions).")

"""Every upstream flag, every flag of the design, and the user's own launch commands parse."""
import shlex
from pathlib import Path

import pytest

from conftest import parse_args
from uni_sign_ext.cli import check_description_args
from utils import check_supported

LAUNCH_COMMANDS = Path(__file__).resolve().parent / "data" / "launch_commands.txt"


def launch_commands():
    """{document: [argv after fine_tuning.py, ...]} from tests/data/launch_commands.txt."""
    commands = {}
    for line in LAUNCH_COMMANDS.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            document = commands.setdefault(line[3:], [])
        elif line and not line.startswith("#"):
            document.append(shlex.split(line))
    return commands


def test_upstream_flags_parse_with_upstream_values():
    args = parse_args(
        "--batch-size", "8", "--gradient-accumulation-steps", "2", "--gradient-clipping", "1.0", "--epochs", "20",
        "--world_size", "4", "--dist_url", "env://", "--local-rank=1", "--hidden_dim", "256", "--finetune", "x.pth",
        "--opt", "AdamW", "--opt-eps", "1e-9", "--opt-betas", "0.9", "0.98", "--clip-grad", "1", "--momentum", "0.9",
        "--weight-decay", "1e-4", "--sched", "cosine", "--lr", "3e-4", "--min-lr", "1e-6", "--warmup-epochs", "1",
        "--output_dir", "out", "--seed", "42", "--eval", "--num_workers", "4", "--no-pin-mem", "--offload",
        "--dtype", "fp16", "--zero_stage", "3", "--compute_fp32_loss", "--quick_break", "5", "--rgb_support",
        "--max_length", "128", "--dataset", "How2Sign", "--task", "SLT", "--label_smoothing", "0.1",
        "--online_video", "demo.mp4")
    assert (args.batch_size, args.local_rank, args.opt_betas, args.pin_mem, args.zero_stage) == (8, 1, [0.9, 0.98], False, 3)
    assert args.rgb_support and args.online_video and not args.use_descriptions
    assert parse_args("--local_rank=2").local_rank == 2
    defaults = parse_args()
    assert (defaults.max_length, defaults.label_smoothing, defaults.dtype, defaults.zero_stage) == (256, 0.2, "bf16", 2)


def test_design_flags_and_defaults():
    args = parse_args("--use_descriptions", "--desc_dir", "d", "--text_fusion_type", "cross_attn",
                      "--text_dropout_p", "0.2", "--mt5_model", "m", "--text_encoder_freeze",
                      "--fusion_checkpoint", "f.pth")
    assert (args.desc_dir, args.text_fusion_type, args.text_dropout_p, args.mt5_model) == ("d", "cross_attn", 0.2, "m")
    defaults = parse_args()
    assert (defaults.use_descriptions, defaults.text_fusion_type, defaults.text_dropout_p) == (False, "gating", 0.1)
    assert defaults.text_encoder_freeze and defaults.mt5_model is None and defaults.fusion_checkpoint == ""
    with pytest.raises(SystemExit):
        parse_args("--text_fusion_type", "concat")


@pytest.mark.parametrize("document", ["Stage 3 plan", "Stage 3 training guide"])
def test_the_users_launch_commands_parse(document):
    commands = launch_commands()[document]
    assert len(commands) >= 3
    for argv in commands:
        args = parse_args(*argv)
        assert args.dataset == "CSL_Daily"
        if "--use_descriptions" in argv:
            assert args.use_descriptions
            check_description_args(args)


def test_rgb_support_is_supported():
    check_supported(parse_args("--rgb_support"))  # RGB-pose runs (tests/test_rgb_runs.py): no refusal


@pytest.mark.parametrize("flags,message", [
    (["--online_video", "demo.mp4"], "--online_video is not supported yet"),
    (["--zero_stage", "4"], "--zero_stage 4 does not exist"),
])
def test_unsupported_modes_parse_then_fail_clearly(flags, message):
    with pytest.raises(SystemExit, match=message):
        check_supported(parse_args(*flags))


@pytest.mark.parametrize("flags,message", [
    (["--use_descriptions", "--no-text_encoder_freeze"], "frozen by design"),
    (["--use_descriptions", "--text_dropout_p", "1.5"], r"\[0, 1\)"),
    (["--fusion_checkpoint", "f.pth"], "--use_descriptions is off"),
])
def test_description_flag_combinations(flags, message):
    with pytest.raises(SystemExit, match=message):
        check_description_args(parse_args(*flags))

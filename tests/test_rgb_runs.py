"""--rgb_support through the real CLI: DeepSpeed ZeRO-2 on 1 and 2 CPU ranks, with and without descriptions,
on the video mini-world; --eval of the saved checkpoint reproduces its test predictions."""
import pytest
import torch

from test_deepspeed import REPO, deepspeed_run
from uni_sign_ext.fixture import build_mini_world
from uni_sign_ext.fixture_video import BACKBONE_WEIGHTS

RGB_KEY_COUNT = 385  # the keys the RGB path adds to a checkpoint (tests/data/unisign_rgb_state_dict.json)
RGB_PREFIXES = ("rgb_support_backbone.", "rgb_proj.", "fusion_pose_rgb_linear.", "fusion_pose_rgb_DA.", "fusion_gate.")
FLAGS = ["--dataset", "CSL_Daily", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--num_workers", "0",
         "--seed", "0", "--max_length", "16", "--dtype", "fp32", "--zero_stage", "2", "--rgb_support"]


@pytest.fixture(scope="module")
def video_world(tmp_path_factory):
    return build_mini_world(tmp_path_factory.mktemp("video_world"), samples_per_split=4, seed=0, videos=True)


def rgb_flags(world, fusion):
    flags = FLAGS + ["--rgb_backbone_weights", str(world / BACKBONE_WEIGHTS)]
    if fusion:
        flags += ["--use_descriptions", "--text_fusion_type", fusion, "--feature_cache_dir", ""]
    return flags


@pytest.mark.parametrize("ranks, fusion", [(1, None), (2, None), (2, "gating"), (1, "cross_attn")])
def test_rgb_pose_trains_saves_and_eval_reproduces(video_world, tmp_path, ranks, fusion):
    out = tmp_path / "train"
    log = deepspeed_run(ranks, REPO / "fine_tuning.py",
                        rgb_flags(video_world, fusion) + ["--epochs", "1", "--output_dir", str(out)], video_world)
    assert f"RGB backbone weights from {video_world / BACKBONE_WEIGHTS}" in log
    assert "epoch 0 [1/1] loss" in log if ranks == 2 else "epoch 0 [2/2] loss" in log
    saved = torch.load(out / "best_checkpoint.pth", map_location="cpu", weights_only=True)
    keys = saved["model"].keys()
    assert len([k for k in keys if k.startswith(RGB_PREFIXES)]) == RGB_KEY_COUNT
    assert any(k.startswith("text_fusion.") for k in keys) == bool(fusion)
    assert saved["args"]["rgb_support"] and saved["epoch"] == 0

    evaluated = tmp_path / "eval"  # on one rank, from the checkpoint alone: no backbone weights file
    eval_flags = [f for f in rgb_flags(video_world, fusion) if f != str(video_world / BACKBONE_WEIGHTS)
                  and f != "--rgb_backbone_weights"]
    deepspeed_run(1, REPO / "fine_tuning.py",
                  eval_flags + ["--eval", "--finetune", str(out / "best_checkpoint.pth"), "--output_dir",
                                str(evaluated)], video_world)
    predictions = (out / "test_tmp_pres.txt").read_text()
    assert predictions.strip() and (evaluated / "test_tmp_pres.txt").read_text() == predictions

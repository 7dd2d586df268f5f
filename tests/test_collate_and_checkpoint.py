"""Collate padding/mask, and checkpoint loading rules (strict, fusion keys, clear errors)."""
import pytest
import torch

from conftest import parse_args
from datasets import collate
from models import Uni_Sign
from uni_sign_ext.checkpoint import CheckpointError, load_fusion_checkpoint, load_model_checkpoint
from uni_sign_ext.cli import check_description_args


def item(name, frames, value):
    pose = {part: (value + torch.arange(frames).float())[:, None, None].expand(frames, v, 3).clone()
            for part, v in {"body": 9, "left": 21, "right": 21, "face_all": 18}.items()}
    return name, pose, f"text {name}", "gloss", {}


def test_collate_pads_by_repeating_last_frame_and_masks():
    src, tgt = collate([item("a", 3, 0), item("b", 5, 100)])
    assert src["body"].shape == (2, 5, 9, 3)
    assert src["left"][0, :, 0, 0].tolist() == [0, 1, 2, 2, 2]
    assert src["face_all"][1, :, 0, 0].tolist() == [100, 101, 102, 103, 104]
    assert src["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert src["src_length_batch"].tolist() == [3, 5]
    assert src["name_batch"] == ["a", "b"]
    assert tgt == {"gt_sentence": ["text a", "text b"], "gt_gloss": ["gloss", "gloss"]}


@pytest.fixture(scope="module")
def upstream_checkpoint(tiny_mt5, tmp_path_factory):
    """A checkpoint in upstream's format: {'model': state_dict} of the pose-only model."""
    torch.manual_seed(3)
    model = Uni_Sign(parse_args("--mt5_path", tiny_mt5))
    path = tmp_path_factory.mktemp("ckpt") / "stage2.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model.state_dict()


def test_upstream_checkpoint_loads_strictly(tiny_mt5, upstream_checkpoint):
    path, state = upstream_checkpoint
    model = Uni_Sign(parse_args("--mt5_path", tiny_mt5))
    assert load_model_checkpoint(model, str(path)) == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_missing_and_unexpected_keys_are_errors_that_list_them(tiny_mt5, upstream_checkpoint, tmp_path):
    path, state = upstream_checkpoint
    broken = dict(state)
    del broken["pose_proj.bias"]
    broken["extra.weight"] = torch.zeros(1)
    torch.save({"model": broken}, tmp_path / "broken.pth")
    model = Uni_Sign(parse_args("--mt5_path", tiny_mt5))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): pose_proj.bias.*unexpected keys \(1\): extra.weight"):
        load_model_checkpoint(model, str(tmp_path / "broken.pth"))
    torch.save({"weights": state}, tmp_path / "nomodel.pth")
    with pytest.raises(CheckpointError, match="'model'"):
        load_model_checkpoint(model, str(tmp_path / "nomodel.pth"))


def test_upstream_checkpoint_into_fusion_model_reports_only_fusion_keys(tiny_mt5, upstream_checkpoint, caplog):
    path, state = upstream_checkpoint
    model = Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--use_descriptions"))
    missing = load_model_checkpoint(model, str(path))
    fusion_keys = [k for k in model.state_dict() if k.startswith("text_fusion.")]
    assert sorted(missing) == sorted(fusion_keys) and fusion_keys
    assert "start fresh" in caplog.text
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_fusion_checkpoint_round_trip_and_needs_the_flag(tiny_mt5, tmp_path):
    torch.manual_seed(5)
    trained = Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--use_descriptions"))
    with torch.no_grad():
        trained.text_fusion.gating.text_proj.weight.normal_()
    fusion = {k: v for k, v in trained.state_dict().items() if k.startswith("text_fusion.")}
    torch.save({"model": fusion}, tmp_path / "fusion.pth")
    fresh = Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--use_descriptions"))
    load_fusion_checkpoint(fresh, str(tmp_path / "fusion.pth"))
    for key, value in fusion.items():
        assert torch.equal(fresh.state_dict()[key], value)

    plain = Uni_Sign(parse_args("--mt5_path", tiny_mt5))
    with pytest.raises(CheckpointError, match="--use_descriptions"):
        load_fusion_checkpoint(plain, str(tmp_path / "fusion.pth"))
    torch.save({"model": trained.state_dict()}, tmp_path / "full_fusion.pth")
    with pytest.raises(CheckpointError, match="--use_descriptions"):
        load_model_checkpoint(plain, str(tmp_path / "full_fusion.pth"))
    with pytest.raises(SystemExit, match="--use_descriptions is off"):
        check_description_args(parse_args("--fusion_checkpoint", str(tmp_path / "fusion.pth")))

    cross = Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--use_descriptions", "--text_fusion_type", "cross_attn"))
    with pytest.raises(CheckpointError, match="text_fusion_type"):
        load_fusion_checkpoint(cross, str(tmp_path / "fusion.pth"))

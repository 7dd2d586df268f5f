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
    assert f"{len(fusion_keys)} text_fusion.* keys start fresh" in caplog.text
    assert "RGB-pose keys" not in caplog.text  # a pose-only model has none to start fresh
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


class Toy(torch.nn.Module):
    """Two plain keys and, with fusion, two `text_fusion.` keys: every loading rule on a tiny model."""

    def __init__(self, fusion):
        super().__init__()
        self.pose = torch.nn.Linear(2, 3)
        if fusion:
            self.text_fusion = torch.nn.Linear(3, 1)


def toy_state(fusion, seed=11):
    torch.manual_seed(seed)
    return Toy(fusion).state_dict()


def edited(state, drop=(), add=None, reshape=()):
    state = {k: v for k, v in state.items() if k not in drop}
    state.update(add or {})
    for key in reshape:
        state[key] = torch.zeros(7)
    return state


# (model has fusion, checkpoint, error or None). Only fusion keys may be missing, all of them (an upstream
# checkpoint), and only from a fusion model; a partial fusion set means other architecture flags.
CASES = {
    "exact plain": (False, lambda: toy_state(False), None),
    "exact fusion": (True, lambda: toy_state(True), None),
    "fusion keys missing": (True, lambda: toy_state(False), None),
    "one fusion key missing": (True, lambda: edited(toy_state(True), drop=["text_fusion.bias"]),
                               r"do not fit .*missing text_fusion.bias; unexpected none\)$"),
    "plain key missing": (False, lambda: edited(toy_state(False), drop=["pose.bias"]),
                          r"missing keys \(1\): pose.bias$"),
    "plain key missing, fusion model": (True, lambda: edited(toy_state(True), drop=["pose.bias"]),
                                        r"missing keys \(1\): pose.bias$"),
    "plain and fusion keys missing": (True, lambda: edited(toy_state(False), drop=["pose.weight"]),
                                      r"missing keys \(1\): pose.weight$"),
    "unexpected plain key": (False, lambda: edited(toy_state(False), add={"extra": torch.zeros(1)}),
                             r"unexpected keys \(1\): extra$"),
    "unexpected plain key, fusion model": (True, lambda: edited(toy_state(True), add={"extra": torch.zeros(1)}),
                                           r"unexpected keys \(1\): extra$"),
    "unexpected fusion key, fusion model": (True, lambda: edited(toy_state(True),
                                                                 add={"text_fusion.gate": torch.zeros(1)}),
                                            r"do not fit .*missing none; unexpected text_fusion.gate\)$"),
    "fusion weights into a plain model": (False, lambda: toy_state(True), "load it with --use_descriptions"),
    "missing and unexpected": (False, lambda: edited(toy_state(False), drop=["pose.bias"], add={"x": torch.zeros(1)}),
                               r"missing keys \(1\): pose.bias; unexpected keys \(1\): x$"),
    "plain shape mismatch": (False, lambda: edited(toy_state(False), reshape=["pose.bias"]),
                             r"1 tensors differ in shape .* pose.bias \(7,\) vs \(3,\)"),
    "fusion shape mismatch": (True, lambda: edited(toy_state(True), reshape=["text_fusion.bias"]),
                              r"1 tensors differ in shape .* text_fusion.bias \(7,\) vs \(1,\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_model_checkpoint_rules(case, tmp_path):
    fusion, make_state, error = CASES[case]
    state = make_state()
    torch.save({"model": state}, tmp_path / "c.pth")
    torch.manual_seed(99)
    model = Toy(fusion)
    if error:
        with pytest.raises(CheckpointError, match=error):
            load_model_checkpoint(model, str(tmp_path / "c.pth"))
        return
    missing = load_model_checkpoint(model, str(tmp_path / "c.pth"))
    assert sorted(missing) == sorted(set(model.state_dict()) - set(state))
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


FUSION_CASES = {
    "fusion only": (lambda: edited(toy_state(True), drop=["pose.weight", "pose.bias"]), None),
    "full checkpoint, plain keys ignored": (lambda: edited(toy_state(True), reshape=["pose.bias"]), None),
    "fusion key missing": (lambda: edited(toy_state(True), drop=["text_fusion.bias"]),
                           "missing text_fusion.bias; unexpected none"),
    "fusion key unexpected": (lambda: edited(toy_state(True), add={"text_fusion.gate": torch.zeros(1)}),
                              "missing none; unexpected text_fusion.gate"),
    "no fusion keys": (lambda: toy_state(False), "missing text_fusion.bias, text_fusion.weight; unexpected none"),
    "fusion shape mismatch": (lambda: edited(toy_state(True), reshape=["text_fusion.bias"]),
                              "size mismatch for text_fusion.bias"),
}


@pytest.mark.parametrize("case", list(FUSION_CASES))
def test_fusion_checkpoint_rules(case, tmp_path, caplog):
    make_state, error = FUSION_CASES[case]
    state = make_state()
    torch.save({"model": state}, tmp_path / "f.pth")
    torch.manual_seed(99)
    model = Toy(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if error:
        with pytest.raises(CheckpointError, match=error):
            load_fusion_checkpoint(model, str(tmp_path / "f.pth"))
        return
    caplog.set_level("INFO")
    load_fusion_checkpoint(model, str(tmp_path / "f.pth"))
    assert f"loaded 2 description-fusion tensors from {tmp_path / 'f.pth'}" in caplog.text
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key] if key.startswith("text_fusion.") else before[key]), key


def test_errors_list_at_most_20_keys(tmp_path):
    state = edited(toy_state(False), add={f"extra{i:02d}": torch.zeros(1) for i in range(25)})
    torch.save({"model": state}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(25\): extra00, .*, extra19 … and 5 more$"):
        load_model_checkpoint(Toy(False), str(tmp_path / "c.pth"))


def test_checkpoint_record_is_upstreams_model_key_plus_plain_args_and_epoch(tmp_path):
    from pathlib import Path
    from types import SimpleNamespace

    from uni_sign_ext.checkpoint import checkpoint_record

    state = toy_state(True)
    args = SimpleNamespace(lr=3e-4, dataset="CSL_Daily", finetune=None, use_descriptions=True,
                           output_dir=Path("/runs/a"), opt_betas=[0.9, 0.98])
    record = checkpoint_record(state, args, 4)
    assert record["model"] is state and record["epoch"] == 4
    assert record["args"] == {"lr": 3e-4, "dataset": "CSL_Daily", "finetune": None, "use_descriptions": True,
                              "output_dir": "/runs/a", "opt_betas": "[0.9, 0.98]"}
    torch.save(record, tmp_path / "c.pth")
    assert torch.load(tmp_path / "c.pth", weights_only=True)["args"] == record["args"]  # plain values only
    model = Toy(True)
    assert load_model_checkpoint(model, str(tmp_path / "c.pth")) == []

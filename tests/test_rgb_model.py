"""The model side of --rgb_support (issue 10), without torchvision: keys and shapes, the zero gate, which
frames and which hand the crops reach, the backbone's recipe, weights, descriptions on top.

The numbers against torchvision and upstream's own model are in tests/test_rgb_reference.py (run it with
a Python that has torchvision, e.g. .venv_tv/bin/python -m pytest tests/test_rgb_reference.py).
"""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import parse_args
from models import Uni_Sign
from rgb_support import calibrate_batchnorm, open_gate, pose_batch, rgb_batch, support
from uni_sign_ext.checkpoint import load_model_checkpoint
from uni_sign_ext.rgb_backbone import efficientnet_b0_features
from uni_sign_ext.rgb_fusion import fuse_hand
from uni_sign_ext.rgb_weights import BackboneWeightsError, backbone_weights_source, load_backbone_weights

DATA = Path(__file__).resolve().parent / "data"
RGB_PREFIXES = ("rgb_support_backbone.", "rgb_proj.", "fusion_pose_rgb_linear.", "fusion_pose_rgb_DA.", "fusion_gate.")


def rgb_args(tiny_mt5, *argv):
    args = parse_args("--mt5_path", tiny_mt5, "--dataset", "CSL_Daily", *argv)
    args.rgb_support = True
    return args


@pytest.fixture(scope="module")
def pair(tiny_mt5):
    """A fresh RGB model and a pose-only model holding the same pose weights (eval mode)."""
    torch.manual_seed(0)
    rgb = Uni_Sign(rgb_args(tiny_mt5)).eval()
    pose = Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--dataset", "CSL_Daily")).eval()
    pose.load_state_dict({k: v for k, v in rgb.state_dict().items() if not k.startswith(RGB_PREFIXES)}, strict=True)
    return rgb, pose


def test_state_dict_is_pose_spec_plus_rgb_spec(pair):
    rgb, _ = pair
    pose_spec = json.loads((DATA / "unisign_pose_state_dict.json").read_text())["keys"]
    rgb_spec = json.loads((DATA / "unisign_rgb_state_dict.json").read_text())
    assert len(rgb_spec["keys"]) == rgb_spec["count"] == 385 and len(pose_spec) == 343
    ours = {k: list(v.shape) for k, v in rgb.state_dict().items() if not k.startswith("mt5_model.")}
    assert ours == {**pose_spec, **rgb_spec["keys"]}
    assert not hasattr(rgb.fusion_pose_rgb_DA, "pos_embed") or "fusion_pose_rgb_DA.pos_embed" not in ours
    assert tuple(rgb.fusion_pose_rgb_DA.pos_embed.shape) == (1, 16, 256)


def test_without_the_flag_nothing_changes(pair):
    _, pose = pair
    assert not any(k.startswith(RGB_PREFIXES) for k in pose.state_dict())


def test_fresh_gate_is_zero_and_pose_outputs_are_unchanged(pair):
    rgb, pose = pair
    for layer in (rgb.fusion_gate[0], rgb.fusion_gate[2]):
        assert not layer.weight.any() and not layer.bias.any()
    assert [type(m) for m in rgb.fusion_gate] == [nn.Conv1d, nn.GELU, nn.Conv1d, nn.Tanh, nn.ReLU]
    src, tgt = rgb_batch()
    out = rgb(src, tgt)
    ref = pose({k: v for k, v in src.items() if not k.startswith(("left_", "right_"))}, tgt)
    assert torch.equal(out["inputs_embeds"], ref["inputs_embeds"])
    assert torch.equal(out["loss"], ref["loss"])


def test_fresh_init_gives_the_rgb_branch_exactly_zero_gradient(tiny_mt5):
    torch.manual_seed(1)
    model = Uni_Sign(rgb_args(tiny_mt5)).train()
    src, tgt = rgb_batch(seed=1)
    model(src, tgt)["loss"].backward()
    rgb = {n: p for n, p in model.named_parameters() if n.startswith(RGB_PREFIXES)}
    assert rgb["fusion_pose_rgb_linear.weight"].grad is None  # never used, as upstream
    dead = [n for n, p in rgb.items() if p.grad is not None and p.grad.any()]
    assert dead == []
    assert model.pose_proj.weight.grad.any()


def test_rgb_modules_keep_pytorch_default_init(tiny_mt5):
    """Built after the trunc-normal init, as upstream: fusion_pose_rgb_linear has the default init."""
    torch.manual_seed(2)
    model = Uni_Sign(rgb_args(tiny_mt5))
    bound = 1 / 256 ** 0.5
    w = model.fusion_pose_rgb_linear.weight
    assert w.abs().max() <= bound and w.std() > 0.5 * bound / 3 ** 0.5
    assert model.fusion_pose_rgb_linear.bias.any()


def test_backbone_recipe():
    features = efficientnet_b0_features()
    bns = [m for m in features.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 49 and all(m.eps == 1e-5 and m.momentum == 0.1 for m in bns)
    blocks = [b for stage in features[1:8] for b in stage]
    assert len(blocks) == 16
    assert [round(b.drop_prob, 6) for b in blocks] == [round(0.2 * i / 16, 6) for i in range(16)]
    assert [i for i, b in enumerate(blocks) if b.residual] == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    x = torch.randn(2, 3, 112, 112)
    assert features.eval()(x).shape == (2, 1280, 4, 4)


def test_stochastic_depth_draws_from_torch_rng_only_in_training():
    features = efficientnet_b0_features()
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        torch.manual_seed(0)
        features.eval()(x)
        after_eval = torch.rand(3)
        torch.manual_seed(0)
        assert torch.equal(after_eval, torch.rand(3))  # eval mode drew nothing
        torch.manual_seed(0)
        a = features.train()(x)
        torch.manual_seed(0)
        b = features(x)
        torch.manual_seed(1)
        c = features(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stochastic_depth_only_on_residual_blocks(monkeypatch):
    import uni_sign_ext.rgb_backbone as rb

    calls = []
    real = rb.drop_rows
    monkeypatch.setattr(rb, "drop_rows", lambda x, p, training: calls.append(p) or real(x, p, training))
    features = efficientnet_b0_features().train()
    with torch.no_grad():
        features(torch.randn(2, 3, 112, 112))
    assert [round(p * 16 / 0.2) for p in calls] == [2, 4, 6, 7, 9, 10, 12, 13, 14]


def test_backbone_runs_left_crops_then_right_before_the_pose_branch(tiny_mt5):
    """Upstream's order, which decides the stochastic-depth draws in training."""
    torch.manual_seed(8)
    model = Uni_Sign(rgb_args(tiny_mt5)).eval()
    order = []
    model.rgb_support_backbone.register_forward_pre_hook(lambda m, i: order.append(i[0].shape[0]))
    model.proj_linear["body"].register_forward_pre_hook(lambda m, i: order.append("pose"))
    src, tgt = rgb_batch(seed=8, absent=(("right", 0), ("right", 1), ("right", 2)))
    with torch.no_grad():
        model(src, tgt)
    assert order == [len(src["left_hands"]), 3, "pose"] and len(src["left_hands"]) > 3


def _hand_inputs(model):
    """The inputs of the (shared) temporal hand chain: [left, right] in call order."""
    seen = []
    handle = model.fusion_gcn_modules["left"].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    return seen, handle


def open_rgb_model(tiny_mt5, seed):
    """An RGB model in eval mode whose RGB branch acts: BatchNorm statistics set, gate open."""
    torch.manual_seed(seed)
    model = Uni_Sign(rgb_args(tiny_mt5)).eval()
    calibrate_batchnorm(model.rgb_support_backbone)
    open_gate(model)
    return model


def test_left_crops_reach_the_left_hand_only_and_right_the_right(tiny_mt5):
    model = open_rgb_model(tiny_mt5, seed=3)
    src, tgt = rgb_batch(seed=3)
    seen, handle = _hand_inputs(model)
    with torch.no_grad():
        model(src, tgt)
        for hand in ("left", "right"):
            changed = dict(src, **{f"{hand}_hands": src[f"{hand}_hands"] + 1})
            model(changed, tgt)
    handle.remove()
    (left, right), (left_l, right_l), (left_r, right_r) = seen[0:2], seen[2:4], seen[4:6]
    assert not torch.equal(left, left_l) and torch.equal(right, right_l)
    assert torch.equal(left, left_r) and not torch.equal(right, right_r)


def test_only_the_sampled_frames_of_present_hands_change(tiny_mt5):
    model = open_rgb_model(tiny_mt5, seed=4)
    batch, frames = 3, 10
    sup = support(batch, frames, seed=4, absent=(("left", 1),))
    gcn = torch.randn(batch, 256, frames, 21)
    crops = model.rgb_support_backbone(sup["left_hands"])
    with torch.no_grad():
        out = fuse_hand(gcn, crops, sup["left_sampled_indices"], sup["left_rgb_len"], sup["left_skeletons_norm"],
                        model.rgb_proj, model.fusion_pose_rgb_DA, model.fusion_gate)
    changed = (out != gcn).any(dim=1).any(dim=-1)  # (B, T)
    start, expected = 0, torch.zeros(batch, frames, dtype=torch.bool)
    for b, n in enumerate(sup["left_rgb_len"]):
        idx = sup["left_sampled_indices"][start:start + n]
        if not (idx == -1).any():
            expected[b, idx] = True
        start += n
    assert torch.equal(changed, expected) and expected[0].any() and not expected[1].any()
    with pytest.raises(ValueError, match="rgb_len"):
        fuse_hand(gcn, crops, sup["left_sampled_indices"], sup["left_rgb_len"][:2], sup["left_skeletons_norm"],
                  model.rgb_proj, model.fusion_pose_rgb_DA, model.fusion_gate)


def test_float64_skeletons_and_float_indices_are_accepted(tiny_mt5):
    """The data side gives float64 skeletons (spec §6), and a bf16 run casts the indices to floats."""
    model = open_rgb_model(tiny_mt5, seed=5)
    src, tgt = rgb_batch(seed=5)
    with torch.no_grad():
        ref = model(src, tgt)["inputs_embeds"]
        other = dict(src, left_skeletons_norm=src["left_skeletons_norm"].double(),
                     right_sampled_indices=src["right_sampled_indices"].float())
        assert torch.equal(model(other, tgt)["inputs_embeds"], ref)
        # a bf16 model takes them too (cast to its dtype, as fine_tuning.py casts a bf16 batch)
        model.to(torch.bfloat16)
        bf16 = {k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.dtype == torch.float32 else v
                for k, v in src.items()}
        expected = model(bf16, tgt)["inputs_embeds"]
        bf16["left_skeletons_norm"] = src["left_skeletons_norm"].double()
        assert torch.equal(model(bf16, tgt)["inputs_embeds"], expected)


def test_rgb_support_needs_hidden_dim_256(tiny_mt5):
    with pytest.raises(ValueError, match="--hidden_dim 256"):
        Uni_Sign(rgb_args(tiny_mt5, "--hidden_dim", "128"))


# ---------------------------------------------------------------- backbone weights


def test_weights_source_never_random(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    args = parse_args()
    assert backbone_weights_source(args) is None  # no --rgb_support
    args.rgb_support = True
    with pytest.raises(BackboneWeightsError, match="--rgb_backbone_weights"):
        backbone_weights_source(args)
    args.finetune = "ckpt.pth"
    assert backbone_weights_source(args, {"rgb_support_backbone.0.0.0.weight": 0}) is None  # strict load
    with pytest.raises(BackboneWeightsError, match="a pose-only one"):  # stage 2's start: ImageNet weights too
        backbone_weights_source(args, {"stgcn.weight": 0})
    args.finetune = ""
    cache = tmp_path / "torch_home" / "hub" / "checkpoints" / "efficientnet_b0_rwightman-7f5810bc.pth"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"x")
    assert backbone_weights_source(args) == str(cache)
    args.rgb_backbone_weights = str(tmp_path / "missing.pth")
    with pytest.raises(BackboneWeightsError, match="not found"):
        backbone_weights_source(args)


def test_rgb_backbone_weights_flag_parses():
    assert parse_args().rgb_backbone_weights == ""
    assert parse_args("--rgb_backbone_weights", "w.pth").rgb_backbone_weights == "w.pth"


def test_torchvision_format_weights_load_into_the_backbone(tmp_path):
    torch.manual_seed(6)
    source = efficientnet_b0_features()
    state = {f"features.{k}": v for k, v in source.state_dict().items()}
    state.update({"classifier.1.weight": torch.zeros(1000, 1280), "classifier.1.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "efficientnet_b0.pth")
    backbone = nn.Sequential(efficientnet_b0_features())
    load_backbone_weights(backbone, str(tmp_path / "efficientnet_b0.pth"))
    for k, v in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[f"0.{k}"], v), k
    del state["features.8.1.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(BackboneWeightsError, match="1 missing"):
        load_backbone_weights(backbone, str(tmp_path / "broken.pth"))


# ---------------------------------------------------------------- descriptions on top


@pytest.mark.parametrize("fusion_type", ["gating", "cross_attn"])
def test_rgb_pose_checkpoint_with_descriptions(tiny_mt5, tmp_path, fusion_type, caplog):
    torch.manual_seed(7)
    trained = Uni_Sign(rgb_args(tiny_mt5)).eval()
    open_gate(trained)  # an RGB-pose checkpoint whose RGB branch acts
    path = tmp_path / "rgb_pose.pth"
    torch.save({"model": trained.state_dict()}, path)
    model = Uni_Sign(rgb_args(tiny_mt5, "--use_descriptions", "--text_fusion_type", fusion_type)).eval()
    missing = load_model_checkpoint(model, str(path))
    fusion_keys = [k for k in model.state_dict() if k.startswith("text_fusion.")]
    assert fusion_keys and sorted(missing) == sorted(fusion_keys)
    assert "start fresh" in caplog.text
    # the fresh description fusion is an identity at step 0
    src, tgt = rgb_batch(seed=7)
    d = model.mt5_model.config.d_model
    frames = src["body"].shape[1]
    src.update(text_features=torch.randn(2, d), desc_left=torch.zeros(3, frames, dtype=torch.long),
               desc_right=torch.ones(3, frames, dtype=torch.long), desc_weight=torch.full((3, frames), 0.5),
               has_description=torch.ones(3, frames), desc_video_texts=torch.tensor([[0, 1]] * 3))
    with torch.no_grad():
        out, ref = model(src, tgt), trained(src, tgt)
    assert torch.equal(out["inputs_embeds"], ref["inputs_embeds"]) and torch.equal(out["loss"], ref["loss"])


def test_checkpoint_of_the_other_kind_names_the_flag(tiny_mt5, pair, tmp_path):
    from uni_sign_ext.checkpoint import CheckpointError

    rgb, pose = pair
    torch.save({"model": rgb.state_dict()}, tmp_path / "rgb.pth")
    torch.save({"model": pose.state_dict()}, tmp_path / "pose.pth")
    with pytest.raises(CheckpointError, match="RGB-pose checkpoint.*load it with --rgb_support"):
        load_model_checkpoint(Uni_Sign(parse_args("--mt5_path", tiny_mt5)), str(tmp_path / "rgb.pth"))
    fresh = Uni_Sign(rgb_args(tiny_mt5))
    assert load_model_checkpoint(fresh, str(tmp_path / "rgb.pth")) == []
    assert all(torch.equal(v, rgb.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_a_pose_only_checkpoint_starts_the_rgb_modules_fresh_as_stage_two(tiny_mt5, pair, tmp_path):
    """Stage 2 starts from stage 1: every pose key loads, the RGB keys (and only they) stay as built, and the
    zero gate keeps the model the pose-only one at step 0."""
    _, pose = pair
    torch.save({"model": pose.state_dict()}, tmp_path / "pose.pth")
    rgb = Uni_Sign(rgb_args(tiny_mt5))
    built = {k: v.clone() for k, v in rgb.state_dict().items()}
    fresh = load_model_checkpoint(rgb, str(tmp_path / "pose.pth"))
    state = rgb.state_dict()  # (BatchNorm fills a missing num_batches_tracked itself: not reported)
    assert set(fresh) == {k for k in state if k.startswith(RGB_PREFIXES) and not k.endswith("num_batches_tracked")}
    assert all(torch.equal(state[k], built[k]) for k in fresh)
    assert all(torch.equal(state[k], v) for k, v in pose.state_dict().items())


def test_pose_only_forward_unaffected_by_support_keys(pair):
    """A pose-only model ignores support keys in the batch (the data side may always add them)."""
    _, pose = pair
    src, tgt = pose_batch()
    with torch.no_grad():
        a = pose(src, tgt)["inputs_embeds"]
        b = pose(dict(src, **support()), tgt)["inputs_embeds"]
    assert torch.equal(a, b)

"""The RGB-pose path against its references, on the same weights: torchvision's efficientnet_b0().features
and upstream's own models.Uni_Sign (its RGB path), side by side.

Needs torchvision and einops, which the repo's own environment lacks (PyPI's torchvision does not import
beside its torch); run it with a Python that has them:
    .venv_tv/bin/python -m pytest tests/test_rgb_reference.py (bash scripts/reference_env.sh builds it)
Elsewhere the whole module is skipped with that reason. Measured differences are printed (-s shows them).
"""
import types

import pytest
import torch

torchvision = pytest.importorskip(
    "torchvision", reason="torchvision is not importable here: run this file with a Python that has "
    "torchvision + einops (e.g. .venv_tv/bin/python -m pytest tests/test_rgb_reference.py (bash scripts/reference_env.sh builds it))")
pytest.importorskip("einops", reason="einops is not importable here (upstream's RGB path uses it)")

from conftest import parse_args  # noqa: E402
from rgb_support import calibrate_batchnorm, open_gate, rgb_batch  # noqa: E402
from upstream import load_upstream_models, require_upstream  # noqa: E402

TOL = 1e-5


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def rel_diff(a, b):
    """max |a - b| relative to max |b| (the outputs must not be vanishingly small: see calibrate_batchnorm)."""
    return max_diff(a, b) / b.abs().max().item()


# ---------------------------------------------------------------- EfficientNet-B0 features


@pytest.fixture(scope="module")
def backbones():
    from uni_sign_ext.rgb_backbone import efficientnet_b0_features

    torch.manual_seed(0)
    ref = torchvision.models.efficientnet_b0(weights=None).features
    calibrate_batchnorm(ref, 1)
    ours = efficientnet_b0_features()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def test_backbone_state_dict_is_torchvisions(backbones):
    ours, ref = backbones
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_backbone_eval_equals_torchvision(backbones):
    ours, ref = backbones
    x = torch.randn(5, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = ours.eval()(x), ref.eval()(x)
    assert a.shape == (5, 1280, 4, 4)
    assert b.abs().max() > 0.1  # calibrated statistics: outputs of a real size
    print(f"\nbackbone eval: max |ours - torchvision| = {max_diff(a, b):.3g} (output max {b.abs().max():.3g})")
    assert max_diff(a, b) <= TOL and rel_diff(a, b) <= TOL


def test_backbone_train_step_equals_torchvision(backbones):
    """Batch statistics, running-stat updates, stochastic depth (same torch RNG draws) and gradients."""
    ours, ref = backbones
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    x = torch.randn(6, 3, 112, 112, generator=torch.Generator().manual_seed(3))
    results = []
    for model in (ours, ref):
        model.load_state_dict(state)
        model.train()
        model.zero_grad()
        torch.manual_seed(11)
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        after = torch.rand(1)  # the RNG state after the forward: equal draws were made
        results.append((out.detach(), {k: v.clone() for k, v in model.state_dict().items()},
                        {n: p.grad.clone() for n, p in model.named_parameters()}, after))
    (a, sa, ga, ra), (b, sb, gb, rb) = results
    print(f"\nbackbone train: output {max_diff(a, b):.3g}, "
          f"running stats {max(max_diff(sa[k], sb[k]) for k in sa):.3g}, "
          f"grads {max(max_diff(ga[k], gb[k]) for k in ga):.3g}")
    assert torch.equal(ra, rb)
    assert max_diff(a, b) <= TOL
    for k in sa:
        assert max_diff(sa[k], sb[k]) <= TOL, k
    for k in ga:
        assert max_diff(ga[k], gb[k]) <= TOL * max(1.0, gb[k].abs().max().item()), k
    with torch.no_grad():  # stochastic depth is really active: another seed gives another output
        torch.manual_seed(12)
        assert max_diff(ours(x), a) > 1e-3


# ---------------------------------------------------------------- the whole RGB-pose model vs upstream's


@pytest.fixture(scope="module")
def models_pair(tiny_mt5):
    require_upstream()
    up_models = load_upstream_models()
    up_models.mt5_path = tiny_mt5

    def efficientnet_b0(pretrained=False, **kwargs):  # nothing is downloaded: random weights, loaded below
        return torchvision.models.efficientnet_b0(weights=None)

    up_models.torchvision = types.SimpleNamespace(models=types.SimpleNamespace(efficientnet_b0=efficientnet_b0))
    from models import Uni_Sign

    args = parse_args("--mt5_path", tiny_mt5, "--dataset", "CSL_Daily")
    args.rgb_support = True
    torch.manual_seed(0)
    theirs = up_models.Uni_Sign(args)
    calibrate_batchnorm(theirs.rgb_support_backbone, 4)
    open_gate(theirs)  # as after stage 2: the RGB branch acts
    ours = Uni_Sign(args)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def forward_both(pair, train, seed=0, **batch_kwargs):
    src, tgt = rgb_batch(**batch_kwargs)
    results = []
    for model in pair:
        model.train(train)
        model.zero_grad()
        torch.manual_seed(seed)
        out = model({k: v.clone() if torch.is_tensor(v) else list(v) if isinstance(v, list) else v
                     for k, v in src.items()}, dict(tgt))
        results.append(out)
    return results


def test_rgb_model_eval_equals_upstreams(models_pair):
    ours, theirs = models_pair
    out, up_out = forward_both(models_pair, train=False)
    d_embed, d_loss = max_diff(out["inputs_embeds"], up_out["inputs_embeds"]), max_diff(out["loss"], up_out["loss"])
    print(f"\nRGB-pose eval: embeddings {d_embed:.3g}, loss {d_loss:.3g} (loss {up_out['loss'].item():.6f})")
    assert torch.equal(out["attention_mask"], up_out["attention_mask"])
    assert d_embed <= TOL and d_loss <= TOL
    # the crops really reach the embeddings (calibrated backbone, open gate): other crops, other numbers
    src, tgt = rgb_batch()
    with torch.no_grad():
        shifted = ours.eval()(dict(src, left_hands=src["left_hands"] * 0.5, right_hands=src["right_hands"] + 1), tgt)
    effect = max_diff(shifted["inputs_embeds"], out["inputs_embeds"])
    print(f"RGB-pose eval: changing the crops moves the embeddings by up to {effect:.3g}")
    assert effect > 1e-3


def test_rgb_model_train_loss_and_gradients_equal_upstreams(models_pair):
    ours, theirs = models_pair
    out, up_out = forward_both(models_pair, train=True, seed=5)
    out["loss"].backward()
    up_out["loss"].backward()
    d_loss = max_diff(out["loss"], up_out["loss"])
    grads = dict(ours.named_parameters())
    worst, compared, rgb = 0.0, 0, 0
    for name, param in theirs.named_parameters():
        if param.grad is None:
            assert grads[name].grad is None, name
            continue
        scale = max(1.0, param.grad.abs().max().item())
        diff = max_diff(grads[name].grad, param.grad)
        worst = max(worst, diff / scale)
        assert diff <= TOL * scale, (name, diff)
        compared += 1
        rgb += name.startswith(("rgb_", "fusion_pose_rgb_DA", "fusion_gate")) and bool(param.grad.abs().sum() > 0)
    print(f"\nRGB-pose train: loss {d_loss:.3g}, worst relative grad diff {worst:.3g} over {compared} "
          f"tensors ({rgb} RGB-branch tensors with non-zero gradient)")
    assert d_loss <= TOL
    assert rgb > 100
    assert grads["fusion_pose_rgb_linear.weight"].grad is None  # dead weight, as upstream
    # running statistics updated alike (twice per forward: left, then right)
    for (name, a), (_, b) in zip(ours.rgb_support_backbone.state_dict().items(),
                                 theirs.rgb_support_backbone.state_dict().items()):
        assert max_diff(a, b) <= TOL, name


def test_float64_skeletons_upstream_raises_ours_computes_in_float32(models_pair):
    """Upstream's fp32 forward crashes on float64 skeletons_norm (the data side's dtype, spec §10);
    ours casts them to float32 and gives upstream's numbers for the float32 batch."""
    ours, theirs = models_pair
    src, tgt = rgb_batch(skeleton_dtype=torch.float64)
    with pytest.raises(RuntimeError):
        theirs.eval()(dict(src), dict(tgt))
    out = ours.eval()(dict(src), dict(tgt))
    _, up_out = forward_both(models_pair, train=False)
    assert max_diff(out["inputs_embeds"], up_out["inputs_embeds"]) <= TOL


def test_bf16_forward_equals_upstreams(models_pair, tiny_mt5):
    """A bf16 model on inputs cast as upstream's fine_tuning.py casts them (every tensor, indices included;
    rgb_len stays a list). On CPU upstream's fp32 autocast does nothing, so both run in pure bf16."""
    import copy

    ours, theirs = (copy.deepcopy(m).to(torch.bfloat16).eval() for m in models_pair)
    src, tgt = rgb_batch()
    src = {k: v.to(torch.bfloat16) if torch.is_tensor(v) else v for k, v in src.items()}
    with torch.no_grad():
        out, up_out = ours(dict(src), dict(tgt)), theirs(dict(src), dict(tgt))
    d_embed, d_loss = max_diff(out["inputs_embeds"], up_out["inputs_embeds"]), max_diff(out["loss"], up_out["loss"])
    print(f"\nRGB-pose bf16 (CPU): embeddings {d_embed:.3g}, loss {d_loss:.3g}")
    assert d_embed <= TOL and d_loss <= TOL


def test_torchvision_weights_file_loads_into_the_backbone(tmp_path):
    """A file in torchvision's format (what efficientnet_b0_rwightman-7f5810bc.pth holds: the whole
    classifier net's state dict) gives our backbone torchvision's features, output for output."""
    from torch import nn

    from uni_sign_ext.rgb_backbone import rgb_support_backbone
    from uni_sign_ext.rgb_weights import load_backbone_weights

    torch.manual_seed(9)
    net = torchvision.models.efficientnet_b0(weights=None)
    calibrate_batchnorm(net.features, 9)
    torch.save(net.state_dict(), tmp_path / "efficientnet_b0_rwightman-7f5810bc.pth")
    ours = rgb_support_backbone()
    load_backbone_weights(ours, str(tmp_path / "efficientnet_b0_rwightman-7f5810bc.pth"))
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), nn.Sequential(*list(net.children())[:-2]).eval()(x))

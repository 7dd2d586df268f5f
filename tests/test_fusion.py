"""Fusion modules: interpolation in feature space, mask embedding, dropout, gate formula, identity at step 0."""
import pytest
import torch

from conftest import parse_args
from models import Uni_Sign
from uni_sign_ext.fusion import DescriptionFusion, GatingFusion, withhold_descriptions

D = 16


def plan(batch=2, frames=5):
    """Two videos: the user's worked example (texts 0,1,2 at frames 0,2,5 sampled as 0,1,2,4,5), and none."""
    return {
        "text_features": torch.randn(3, D),
        "desc_left": torch.tensor([[0, 0, 1, 1, 2], [-1] * 5]),
        "desc_right": torch.tensor([[0, 1, 1, 2, 2], [-1] * 5]),
        "desc_weight": torch.tensor([[0, 0.5, 0, 2 / 3, 0], [0] * 5]),
        "has_description": torch.tensor([[1, 0, 1, 0, 1], [0] * 5], dtype=torch.float),
        "desc_video_texts": torch.tensor([[0, 1, 2], [-1, -1, -1]]),
    }


def test_aligned_text_interpolates_features_and_uses_mask_embedding():
    fusion = DescriptionFusion(D, D)
    batch = plan()
    f, mask = batch["text_features"], fusion.mask_embedding()[0]
    table = torch.cat([f, fusion.mask_embedding()])
    text = fusion.aligned_text(table, batch["desc_left"], batch["desc_right"], batch["desc_weight"])
    expected = torch.stack([f[0], 0.5 * f[0] + 0.5 * f[1], f[1], f[1] / 3 + 2 * f[2] / 3, f[2]])
    torch.testing.assert_close(text[0], expected)
    torch.testing.assert_close(text[1], mask.expand(5, D))


def test_gate_formula():
    gating = GatingFusion(D, D)
    with torch.no_grad():
        for p in gating.parameters():
            p.normal_()
    pose, text, has = torch.randn(2, 5, D) * 50, torch.randn(2, 5, D), torch.tensor([[1., 0, 1, 0, 1]] * 2)
    fused, gate = gating(pose, text, has)
    ln = torch.nn.functional.layer_norm
    pose_n = ln(pose, (D,), gating.pose_norm.weight, gating.pose_norm.bias)
    text_n = ln(text, (D,), gating.text_norm.weight, gating.text_norm.bias)
    logit = gating.gate_mlp(torch.cat([pose_n, text_n, has[..., None]], -1))
    expected_gate = torch.sigmoid(6 * torch.tanh(logit / 6))
    projected = gating.text_proj(text_n)
    added = projected / torch.sqrt(1 + projected.pow(2).mean(-1, keepdim=True))
    scale = pose.pow(2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(gate, expected_gate)
    torch.testing.assert_close(fused, pose + expected_gate * scale * added, rtol=1e-4, atol=1e-4)
    assert gate.shape == (2, 5, 1)
    assert (added.pow(2).mean(-1) < 1).all()  # the projected text never exceeds the pose's scale


def test_gate_is_not_saturated_for_large_pose_features():
    """Pose features of norm ~100 per frame (as the ST-GCN gives) once saturated the gate (issue 8)."""
    torch.manual_seed(0)
    gating = GatingFusion(D, D)
    pose, text, has = torch.randn(4, 7, D) * 25, torch.randn(4, 7, D), torch.ones(4, 7)  # norm ≈ 100
    _, gate = gating(pose, text, has)
    torch.testing.assert_close(gate, torch.full_like(gate, torch.sigmoid(torch.tensor(-2.0)).item()))
    with torch.no_grad():
        gating.gate_mlp[2].weight.normal_(0, 0.1)  # a trained-looking last layer
    _, gate = gating(pose, text, has)
    torch.testing.assert_close(gating(pose * 100, text, has)[1], gate, rtol=1e-4, atol=1e-5)  # scale-free
    assert gate.std() > 0.01 and 0.02 < gate.min() and gate.max() < 0.98
    with torch.no_grad():
        gating.gate_mlp[2].weight.normal_(0, 100)  # even a runaway layer cannot kill σ′
    logit = torch.logit(gating(pose, text, has)[1].double())
    assert 5.9 < logit.abs().max() < 6.001  # (float32 round trip through σ)


def test_text_moves_the_features_on_the_pose_scale():
    """Before, proj(text) was ~1.5 % of the pose; now a saturated projection moves it by gate × rms(pose)."""
    torch.manual_seed(0)
    gating = GatingFusion(D, D)
    with torch.no_grad():
        gating.text_proj.weight.normal_(0, 10)
    pose = torch.randn(3, 4, D) * 25
    fused, gate = gating(pose, torch.randn(3, 4, D), torch.ones(3, 4))
    relative = (fused - pose).norm(dim=-1) / pose.norm(dim=-1)
    torch.testing.assert_close(relative, gate.squeeze(-1), rtol=0.02, atol=0)  # unit rms × rms(pose)


@pytest.mark.parametrize("fusion_type", ["gating", "cross_attn"])
def test_fresh_fusion_is_exact_identity(fusion_type):
    fusion = DescriptionFusion(D, D, fusion_type).train()
    pose = torch.randn(2, 5, D)
    fused, gate, _ = fusion(pose, plan())
    assert torch.equal(fused, pose)
    torch.testing.assert_close(gate, torch.full_like(gate, torch.sigmoid(torch.tensor(-2.0)).item()))


@pytest.mark.parametrize("fusion_type", ["gating", "cross_attn"])
def test_text_dropout_only_in_training(fusion_type):
    """Text dim ≠ feature dim, as with --mt5_model: dropout once crashed for cross_attn there."""
    torch.manual_seed(0)
    fusion = DescriptionFusion(D, 2 * D, fusion_type, text_dropout_p=0.999)
    with torch.no_grad():
        fusion.gating.text_proj.weight.normal_()
    pose = torch.randn(2, 5, D)
    batch = dict(plan(), text_features=torch.randn(3, 2 * D))
    fusion.eval()
    first, _, has_eval = fusion(pose, batch)
    second, _, _ = fusion(pose, batch)
    assert torch.equal(first, second) and torch.equal(has_eval, batch["has_description"])
    fusion.train()
    dropped, _, has_train = fusion(pose, batch)
    assert not has_train.any()  # every frame dropped → no frame counts as described
    withheld, _, _ = fusion.eval()(pose, withhold_descriptions(batch))
    torch.testing.assert_close(dropped, withheld)
    assert not torch.allclose(first[0], withheld[0])  # and the text did matter


def test_cross_attention_video_without_texts_sees_only_the_mask():
    fusion = DescriptionFusion(D, D, "cross_attn").eval()
    with torch.no_grad():
        fusion.gating.text_proj.weight.copy_(torch.eye(D))
    pose = torch.randn(2, 5, D)
    batch = plan()
    fused, _, _ = fusion(pose, batch)
    other = dict(batch, text_features=torch.randn(3, D))
    fused_other, _, _ = fusion(pose, other)
    assert torch.equal(fused[1], fused_other[1])  # video 2 has no texts: unaffected by any text
    assert not torch.allclose(fused[0], fused_other[0])


@pytest.fixture(scope="module")
def models(tiny_mt5):
    torch.manual_seed(0)
    plain = Uni_Sign(parse_args("--mt5_path", tiny_mt5)).eval()
    fused = Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--use_descriptions")).eval()
    missing, unexpected = fused.load_state_dict(plain.state_dict(), strict=False)  # an upstream-style checkpoint
    assert missing and all(key.startswith("text_fusion.") for key in missing) and not unexpected
    return plain, fused


def test_step_zero_identity_loss_and_generation(models):
    plain, fused = models
    g = torch.Generator().manual_seed(1)
    src = {part: torch.rand(2, 5, v, 3, generator=g) for part, v in
           {"body": 9, "left": 21, "right": 21, "face_all": 18}.items()}
    src["attention_mask"] = torch.ones(2, 5, dtype=torch.long)
    desc = plan()
    desc["text_features"] = torch.randn(3, 768)
    tgt = {"gt_sentence": ["你们好！", "谢谢"], "gt_gloss": ["", ""]}
    with torch.no_grad():
        out_plain = plain(dict(src), tgt)
        out_fused = fused(dict(src, **desc), tgt)
        assert torch.equal(out_plain["loss"], out_fused["loss"])
        assert torch.equal(plain.generate(out_plain), fused.generate(out_fused))
    assert "gate" in out_fused and "gate" not in out_plain


def test_cross_attention_ignores_another_videos_padded_keys():
    # Video 0 has one text, video 1 has three: video 0's row of desc_video_texts is padded with −1.
    # Its output must equal the output of the same video alone in a batch, where nothing is padded.
    torch.manual_seed(4)
    fusion = DescriptionFusion(D, D, "cross_attn").eval()
    with torch.no_grad():
        fusion.gating.text_proj.weight.copy_(torch.eye(D))
    pose = torch.randn(2, 5, D)
    features = torch.randn(4, D)
    pair = {"text_features": features, "has_description": torch.zeros(2, 5),
            "desc_video_texts": torch.tensor([[0, -1, -1], [1, 2, 3]])}
    alone = {"text_features": features[:1], "has_description": torch.zeros(1, 5),
             "desc_video_texts": torch.tensor([[0]])}
    with torch.no_grad():
        together, _, _ = fusion(pose, pair)
        single, _, _ = fusion(pose[:1], alone)
    torch.testing.assert_close(together[0], single[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # video 0's own text (index 0) is a real key: changing it changes the output
        changed, _, _ = fusion(pose, dict(pair, text_features=torch.cat([torch.randn(1, D), features[1:]])))
    assert (changed[0] - together[0]).abs().max() > 1e-3


def test_gate_mlp_first_layer_is_xavier_uniform():
    # Xavier's bound sqrt(6 / (fan_in + fan_out)) is well below nn.Linear's default 1/sqrt(fan_in) here.
    torch.manual_seed(0)
    weight = GatingFusion(D, D).gate_mlp[0].weight
    fan_out, fan_in = weight.shape
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert bound < 0.7 / fan_in ** 0.5
    assert 0.95 * bound < weight.abs().max().item() <= bound


@pytest.mark.parametrize("start_logit, text_helps", [(25.0, False), (-25.0, True)])
def test_gate_recovers_from_its_bounds(start_logit, text_helps):
    """A gate pushed far past a bound (raw logit ±25, where a plain σ′ is ~1e-11) still learns back under Adam: it cannot lock open or shut."""
    torch.manual_seed(0)
    gating = GatingFusion(D, D)
    with torch.no_grad():
        gating.text_proj.weight.copy_(torch.eye(D) * 5)
        gating.gate_mlp[2].bias.fill_(start_logit)
    gating.text_proj.requires_grad_(False)  # only the gate can change how much text gets in
    optimizer = torch.optim.AdamW(gating.gate_mlp.parameters(), lr=1e-2, weight_decay=0)
    pose, text, has = torch.randn(8, 6, D) * 30, torch.randn(8, 6, D), torch.ones(8, 6)
    with torch.no_grad():
        added = torch.nn.functional.layer_norm(text, (D,)) * 5
        target = pose + (pose.pow(2).mean(-1, keepdim=True).sqrt() * added / torch.sqrt(1 + added.pow(2).mean(
            -1, keepdim=True)) if text_helps else 0)
    for _ in range(60):
        fused, gate = gating(pose, text, has)
        loss = (fused - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert (gate.mean() > 0.5) if text_helps else (gate.mean() < 0.5), gate.mean()


@pytest.mark.parametrize("fusion_type", ["gating", "cross_attn"])
def test_fusion_leaves_the_runs_random_streams_alone(fusion_type):
    """Same seed with and without descriptions → same batch order and pose-model dropout (fair comparison)."""
    pose, batch = torch.randn(2, 5, D), plan()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    fusion = DescriptionFusion(D, D, fusion_type, text_dropout_p=0.9).train()
    _, _, has = fusion(pose, batch)
    assert torch.equal(torch.rand(4), expected)
    assert 0 < has.sum() < batch["has_description"].sum()  # dropout did draw, from its own stream
    torch.manual_seed(4)
    other = DescriptionFusion(D, D, fusion_type)
    assert not torch.equal(other.mask_embedding.mask, fusion.mask_embedding.mask)  # still follows --seed


def test_gate_stats_average_real_frames_by_kind_and_print_na_for_none_seen():
    from uni_sign_ext.fusion import GateStats, format_gate

    stats = GateStats()
    gate = torch.tensor([[0.2, 0.4, 0.9, 0.7], [0.6, 0.1, 0.3, 0.5]]).unsqueeze(-1)
    has = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])  # frame 3 of video 0 is padding
    stats.add({"gate": gate, "has_description": has}, mask)
    means = stats.means()
    assert means["gate_described"] == pytest.approx((0.2 + 0.4 + 0.6) / 3)
    assert means["gate_undescribed"] == pytest.approx((0.9 + 0.1 + 0.3 + 0.5) / 4)
    assert (format_gate(means["gate_described"]), format_gate(None)) == ("0.4000", "n/a")
    only_undescribed = GateStats()
    only_undescribed.add({"gate": gate, "has_description": torch.zeros_like(has)}, mask)
    assert only_undescribed.means()["gate_described"] is None

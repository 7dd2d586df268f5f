"""Uni_Sign against the upstream spec: keys and shapes, sharing, prompt, labels, loss, generation."""
import json
from pathlib import Path

import pytest
import torch
from transformers import MT5ForConditionalGeneration

from conftest import parse_args
from models import Uni_Sign, prompt_for

SPEC = Path(__file__).resolve().parent / "data" / "unisign_pose_state_dict.json"
NODES = {"body": 9, "left": 21, "right": 21, "face_all": 18}


@pytest.fixture(scope="module")
def model(tiny_mt5):
    torch.manual_seed(0)
    return Uni_Sign(parse_args("--mt5_path", tiny_mt5, "--dataset", "CSL_Daily")).eval()


def random_batch(batch=2, frames=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = {part: torch.rand(batch, frames, v, 3, generator=g) * 2 - 1 for part, v in NODES.items()}
    src["attention_mask"] = torch.ones(batch, frames, dtype=torch.long)
    src["attention_mask"][batch - 1, frames - 3:] = 0
    return src, {"gt_sentence": ["你们好！", "我们在这里。"][:batch], "gt_gloss": ["", ""][:batch]}


def test_state_dict_matches_upstream_spec(model):
    spec = json.loads(SPEC.read_text())["keys"]
    pose_keys = {k: list(v.shape) for k, v in model.state_dict().items() if not k.startswith("mt5_model.")}
    assert pose_keys == spec
    mt5_keys = {k[len("mt5_model."):] for k in model.state_dict() if k.startswith("mt5_model.")}
    assert mt5_keys == set(model.mt5_model.state_dict())


def test_hands_share_modules(model):
    for modules in (model.proj_linear, model.gcn_modules, model.fusion_gcn_modules):
        assert modules["left"] is modules["right"]
    assert model.gcn_modules["left"] is not model.gcn_modules["body"]


def test_fresh_weights_follow_upstream_init(tiny_mt5):
    torch.manual_seed(1)
    model = Uni_Sign(parse_args("--mt5_path", tiny_mt5))
    assert not model.part_para.any()
    assert not model.pose_proj.bias.any() and not model.proj_linear["body"].bias.any()
    # trunc_normal_(std=0.02) with the default cut at ±2 (absolute), as timm's helper does
    assert abs(model.pose_proj.weight.std().item() - 0.02) < 0.001
    assert abs(model.pose_proj.weight.mean().item()) < 0.001


def test_prompt_language():
    assert prompt_for("CSL_Daily") == "Translate sign language video to Chinese: "
    assert prompt_for("CSL_News") == "Translate sign language video to Chinese: "
    assert prompt_for("How2Sign") == "Translate sign language video to English: "


def pose_proj_input(model, src):
    """The (B, T, 4·256) concatenation that pose_proj receives."""
    captured = []
    handle = model.pose_proj.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    model.encode_pose(src)
    handle.remove()
    return captured[0]


def test_pose_features_concatenate_parts_in_order(model):
    src, _ = random_batch()
    with torch.no_grad():
        x = pose_proj_input(model, src)
        body = model.fusion_gcn_modules["body"](model.gcn_modules["body"](
            model.proj_linear["body"](src["body"]).permute(0, 3, 1, 2))).mean(-1).transpose(1, 2)
        changed = pose_proj_input(model, dict(src, right=torch.zeros_like(src["right"])))
    assert x.shape == (2, 12, 1024)
    torch.testing.assert_close(x[..., :256], body, rtol=1e-5, atol=1e-5)
    diff = (changed - x).abs().amax(dim=(0, 1))  # order: body, left, right, face_all
    assert diff[512:768].max() > 0 and diff[:512].max() == 0 and diff[768:].max() == 0


def test_body_feature_is_detached_for_other_parts(model):
    src, _ = random_batch(batch=1)
    src["body"].requires_grad_(True)
    x = pose_proj_input(model, src)
    x[..., 256:].sum().backward()  # left, right, face: they add body features, but detached
    assert src["body"].grad is None or not src["body"].grad.any()
    x = pose_proj_input(model, src)
    x[..., :256].sum().backward()
    assert src["body"].grad.abs().sum() > 0


def test_forward_prompt_labels_and_loss(model):
    src, tgt = random_batch()
    with torch.no_grad():
        out = model(src, tgt)
    prompt = model.mt5_tokenizer([model.lang], return_tensors="pt")
    n_prompt = prompt["input_ids"].shape[1]
    assert prompt["input_ids"][0, -1].item() == model.mt5_tokenizer.eos_token_id
    assert out["inputs_embeds"].shape == (2, n_prompt + 12, 768)
    torch.testing.assert_close(out["inputs_embeds"][0, :n_prompt],
                               model.mt5_model.encoder.embed_tokens(prompt["input_ids"])[0])
    assert out["attention_mask"][:, :n_prompt].all()
    assert out["attention_mask"][1, -3:].tolist() == [0, 0, 0] and out["attention_mask"][0].all()

    labels = model.tokenize_targets(tgt["gt_sentence"], "cpu")
    pad = model.mt5_tokenizer.pad_token_id
    raw = model.mt5_tokenizer(tgt["gt_sentence"], padding="longest", return_tensors="pt")["input_ids"]
    assert (labels == torch.where(raw == pad, -100, raw)).all() and (labels == -100).any()
    with torch.no_grad():
        logits = model.mt5_model(inputs_embeds=out["inputs_embeds"], attention_mask=out["attention_mask"],
                                 labels=labels).logits
    # Label-smoothed cross-entropy by hand: (1-ε)·NLL + ε·mean over the vocabulary of -log p.
    logp = logits.log_softmax(-1)
    keep = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    smooth = -logp.mean(-1)
    expected = ((1 - 0.2) * nll + 0.2 * smooth)[keep].mean()
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-5)


def test_targets_truncated_at_50_tokens(model):
    labels = model.tokenize_targets(["right hand moves up, left hand draws a circle. " * 20, "Hi"], "cpu")
    assert labels.shape == (2, 50)
    assert labels[0, -1] == model.mt5_tokenizer.eos_token_id


def test_generation_is_beam_search_from_pose_embeddings(model):
    src, tgt = random_batch(seed=1)  # a batch where 4 beams and greedy search disagree
    with torch.no_grad():
        out = model(src, tgt)
        tokens = model.generate(out)
        expected = MT5ForConditionalGeneration.generate(
            model.mt5_model, inputs_embeds=out["inputs_embeds"], attention_mask=out["attention_mask"],
            max_new_tokens=100, num_beams=4)
        greedy = model.mt5_model.generate(inputs_embeds=out["inputs_embeds"],
                                          attention_mask=out["attention_mask"], max_new_tokens=100)
    assert torch.equal(tokens, expected)
    assert tokens.shape == (2, 101)  # this untrained model never ends a sentence: all 100 new tokens
    assert tokens[:, 0].eq(model.mt5_model.config.decoder_start_token_id).all()
    assert greedy.shape[1] <= 101
    width = max(tokens.shape[1], greedy.shape[1])
    pad = model.mt5_model.config.pad_token_id
    padded = [torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in (tokens, greedy)]
    assert not torch.equal(*padded)


def test_generation_settings_of_evaluation():
    import fine_tuning

    assert (fine_tuning.GENERATE_NUM_BEAMS, fine_tuning.GENERATE_MAX_NEW_TOKENS) == (4, 100)


@pytest.mark.parametrize("part,offset,anchor", [("left", 256, 7), ("right", 512, 8), ("face_all", 768, 0)])
def test_parts_add_their_body_anchor_node(model, part, offset, anchor):
    # Upstream adds the body graph's feature at node -2 (left wrist side), -1 (right) and 0 (face).
    src, _ = random_batch()
    with torch.no_grad():
        x = pose_proj_input(model, src)
        body = model.gcn_modules["body"](model.proj_linear["body"](src["body"]).permute(0, 3, 1, 2))
        own = model.gcn_modules[part](model.proj_linear[part](src[part]).permute(0, 3, 1, 2))

        def feature(node):
            fused = model.fusion_gcn_modules[part](own + body[..., node].unsqueeze(-1))
            return fused.mean(-1).transpose(1, 2)

        torch.testing.assert_close(x[..., offset:offset + 256], feature(anchor), rtol=1e-5, atol=1e-5)
        for other in {0, 7, 8} - {anchor}:
            assert (feature(other) - feature(anchor)).abs().max() > 1e-3

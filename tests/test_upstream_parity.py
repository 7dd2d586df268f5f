"""Upstream Uni-Sign's own code beside ours, on the same weights and pose files: equal numbers.

Skipped (with the reason) when no upstream checkout is found; see tests/upstream.py.
"""
import argparse
from pathlib import Path

import pytest
import torch

from conftest import parse_args
from upstream import load_upstream, point_at, require_upstream, seeded_items, upstream_args

PARTS = ("body", "left", "right", "face_all")
# Flags whose choices this fork extends on purpose (documented in the README): ours = upstream's + these.
EXTENDED_CHOICES = {"--dtype": {"fp32"}}  # CPU runs without native bf16


@pytest.fixture(scope="module")
def up():
    require_upstream()
    return load_upstream()


# ---------------------------------------------------------------- argument parser


def _actions(parser):
    return {option: action for action in parser._actions for option in action.option_strings
            if not isinstance(action, argparse._HelpAction)}


def test_every_upstream_flag_parses_like_upstream(up):
    parse_args()  # reloads config and utils, as every parse in the tests does
    import utils

    ours = _actions(utils.get_args_parser())
    theirs = _actions(up.utils.get_args_parser())
    assert len(theirs) == 37  # upstream 2c9028f
    for option, action in theirs.items():
        assert option in ours, f"{option} missing"
        mine = ours[option]
        for field in ("dest", "default", "type", "nargs", "const", "required"):
            assert getattr(mine, field) == getattr(action, field), (option, field)
        assert type(mine) is type(action), option
        expected = set(action.choices) | EXTENDED_CHOICES.get(option, set()) if action.choices else None
        assert (set(mine.choices) if mine.choices else None) == expected, option


# ---------------------------------------------------------------- metrics


def _released_pairs(up):
    """(references, predictions) of every split upstream released under out/ (already CSL-prepared)."""
    pairs = []
    for predictions in sorted(Path(up.path, "out").glob("*/*_tmp_pres.txt")):
        refs = predictions.with_name(predictions.name.replace("_pres", "_refs"))
        hyp = [line.split(", prediction: ", 1)[1] for line in predictions.read_text("utf-8").splitlines()]
        ref = [line.split(", ground-truth: ", 1)[1] for line in refs.read_text("utf-8").splitlines()]
        pairs.append((f"{predictions.parent.name}/{predictions.name}", ref, hyp))
    return pairs


HAND_MADE = [
    (["the cat sat on the mat", "a b c d e"], ["the cat sat on a mat", "a b c x e"]),
    (["he is four years old ."], ["she is fifty years old ."]),
    (["一 样 的 句 子 。", "今 天 星 期 几 ?"], ["一 样 的 句 子 。", "今 天 星 期 五 。"]),
]


def _real_label_pairs():
    """Real label lines (shipped subsets) against a deterministic corruption of each: every third token
    dropped, the first two swapped; CSL-Daily prepared per character as upstream's evaluate() does."""
    from uni_sign_ext.fixture import REAL_LABELS_DIR, read_labels
    from uni_sign_ext.metrics import prepare_csl_daily

    def corrupt(tokens):
        kept = [t for i, t in enumerate(tokens) if i % 3 != 2] or tokens
        return kept[1::-1] + kept[2:]

    pairs = []
    for name, per_char in (("CSL_Daily/labels.train", True), ("How2Sign/labels.test", False)):
        refs = [entry["text"] for entry in read_labels(REAL_LABELS_DIR / name).values()][:300]
        hyps = ["".join(corrupt(list(r))) if per_char else " ".join(corrupt(r.split())) for r in refs]
        if per_char:
            refs, hyps = prepare_csl_daily(refs, hyps)
        pairs.append((name, refs, hyps))
    return pairs


def test_metrics_equal_upstreams_on_its_released_predictions_real_labels_and_hand_made_ones(up, capsys):
    from uni_sign_ext.metrics import translation_performance

    pairs = _released_pairs(up) + _real_label_pairs()
    pairs += [(f"hand-made {i}", r, h) for i, (r, h) in enumerate(HAND_MADE)]
    assert len(pairs) >= 5 + 2 + len(HAND_MADE)
    for name, refs, hyps in pairs:
        bleu, rouge = up.SLRT_metrics.translation_performance(refs, hyps)
        ours = translation_performance(refs, hyps)
        expected = {**bleu, "rouge": rouge}
        assert set(ours) == set(expected), name
        for key, value in expected.items():
            assert ours[key] == pytest.approx(value, abs=1e-9), (name, key)


def test_csl_daily_preparation_equals_upstreams_evaluate(up):
    """Upstream's evaluate() prepares CSL-Daily text inline; ours must give the same strings."""
    from uni_sign_ext.metrics import prepare_csl_daily

    refs, hyps = ["他今年四岁。", "今天，星期几？ "], ["她 今年 5 0岁。\n", ""]
    assert prepare_csl_daily(refs, hyps) == (["他 今 年 四 岁 。", "今 天 , 星 期 几 ?"],
                                             ["她 今 年 5 0 岁 。", ""])


# ---------------------------------------------------------------- dataset, model


@pytest.fixture(scope="module")
def world(up, mini_world):
    point_at(up, mini_world / "pretrained_weight" / "mt5-base",
             {"CSL_Daily": str(mini_world / "dataset" / "CSL_Daily" / "pose_format")})
    return mini_world


MAX_LENGTH = 24  # below most mini-world clips, so frames are sampled at random


@pytest.fixture(scope="module")
def datasets_pair(up, world):
    import importlib

    import config
    import datasets

    label_path = str(world / "data" / "CSL_Daily" / "labels.train")
    theirs = up.datasets.S2T_Dataset(path=label_path, args=upstream_args(max_length=MAX_LENGTH), phase="train")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNISIGN_ROOT", str(world))
        importlib.reload(config)
        ours = datasets.S2T_Dataset(label_path, parse_args("--max_length", str(MAX_LENGTH)), "train")
    importlib.reload(config)
    return ours, theirs


def test_dataset_items_and_seeded_sampling_equal_upstreams(datasets_pair):
    ours, theirs = datasets_pair
    assert ours.names == theirs.list
    indices = list(range(len(theirs)))
    mine, upstream_items = seeded_items(ours, indices, 7), seeded_items(theirs, indices, 7)
    sampled = 0
    for a, b in zip(mine, upstream_items):
        assert a[0] == b[0] and a[2] == b[2] and a[3] == b[3]
        for part in PARTS:
            assert a[1][part].dtype == b[1][part].dtype, part
            assert torch.equal(a[1][part], b[1][part]), (a[0], part)
        sampled += len(b[1]["body"]) == MAX_LENGTH
    assert sampled >= 3  # the seeded sampling of long clips was exercised


def test_collate_equals_upstreams(datasets_pair):
    ours, theirs = datasets_pair
    indices = [0, 3, 5, 8]
    src, tgt = ours.collate_fn(seeded_items(ours, indices, 11))
    up_src, up_tgt = theirs.collate_fn(seeded_items(theirs, indices, 11))
    assert tgt == up_tgt
    assert set(up_src) <= set(src)
    for key, value in up_src.items():
        if torch.is_tensor(value):
            assert value.dtype == src[key].dtype and torch.equal(value, src[key]), key
        else:
            assert value == src[key], key


@pytest.fixture(scope="module")
def models_pair(up, world, datasets_pair):
    from models import Uni_Sign

    torch.manual_seed(0)
    theirs = up.models.Uni_Sign(upstream_args(dataset="CSL_Daily"))
    ours = Uni_Sign(parse_args("--mt5_path", str(world / "pretrained_weight" / "mt5-base")))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    dataset = datasets_pair[0]
    batch = dataset.collate_fn(seeded_items(dataset, [1, 2, 4], 3))
    for key in PARTS:
        batch[0][key] = batch[0][key].float()
    return ours, theirs, batch


def _record_outputs(model):
    records, handles = {}, []
    for group in ("proj_linear", "gcn_modules", "fusion_gcn_modules"):
        for part in PARTS:
            module = getattr(model, group)[part]
            handles.append(module.register_forward_hook(
                lambda m, i, o, key=f"{group}.{part}": records.setdefault(key, []).append(o.detach())))
    handles.append(model.pose_proj.register_forward_hook(
        lambda m, i, o: records.setdefault("pose_proj", []).append(o.detach())))
    return records, handles


def _forward_both(models_pair, train, seed=0):
    ours, theirs, (src, tgt) = models_pair
    results = []
    for model in (ours, theirs):
        model.train(train)
        model.zero_grad()
        records, handles = _record_outputs(model)
        torch.manual_seed(seed)
        out = model({k: v.clone() if torch.is_tensor(v) else v for k, v in src.items()}, dict(tgt))
        for handle in handles:
            handle.remove()
        results.append((out, records))
    return results


def test_eval_parts_embeddings_and_loss_bit_for_bit(models_pair):
    (out, records), (up_out, up_records) = _forward_both(models_pair, train=False)
    assert set(records) == set(up_records)
    for key in up_records:
        assert len(records[key]) == len(up_records[key]), key
        for a, b in zip(records[key], up_records[key]):
            assert torch.equal(a, b), key
    for key in ("inputs_embeds", "attention_mask"):
        assert torch.equal(out[key], up_out[key]), key
    assert torch.equal(out["loss"], up_out["loss"])


def test_generation_equals_upstreams_beam_search(models_pair):
    ours, theirs, _ = models_pair
    (out, _), (up_out, _) = _forward_both(models_pair, train=False)
    tokens = ours.generate(out, max_new_tokens=100, num_beams=4)
    up_tokens = theirs.generate(up_out, max_new_tokens=100, num_beams=4)
    assert tokens.shape[1] > 2
    assert torch.equal(tokens, up_tokens)


def test_train_mode_loss_and_gradients_equal_upstreams(models_pair):
    ours, theirs, _ = models_pair
    (out, _), (up_out, _) = _forward_both(models_pair, train=True, seed=5)
    (eval_out, _), _ = _forward_both(models_pair, train=False)
    assert not torch.equal(out["loss"], eval_out["loss"])  # dropout was active
    out["loss"].backward()
    up_out["loss"].backward()
    assert torch.equal(out["loss"], up_out["loss"])
    grads = dict(ours.named_parameters())
    compared = 0
    for name, param in theirs.named_parameters():
        if param.grad is None:
            assert grads[name].grad is None, name
            continue
        assert torch.equal(grads[name].grad, param.grad), name
        compared += 1
    assert compared > 50



def test_evaluation_loop_equals_upstreams_evaluate(up, world, models_pair, tmp_path, monkeypatch):
    """fine_tuning.evaluate() against upstream's evaluate() on the same weights and test split: the same
    predictions (so the same beam search: 4 beams, 100 new tokens), references, BLEU/ROUGE and mean loss."""
    import importlib

    import config
    import datasets
    import fine_tuning
    from upstream import CpuEngine
    from uni_sign_ext.distributed_eval import ShardedBatchSampler
    from uni_sign_ext.metrics import prepare_csl_daily

    ours, theirs, _ = models_pair
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)  # upstream's evaluate pads on CUDA
    label_path = str(world / "data" / "CSL_Daily" / "labels.test")
    flags = ["--max_length", "256", "--batch-size", "4"]  # no clip is sampled: both loops see every frame
    up_args = upstream_args(argv=flags, eval=True, output_dir=str(tmp_path / "theirs"))
    (tmp_path / "theirs").mkdir()
    up_data = up.datasets.S2T_Dataset(path=label_path, args=up_args, phase="test")
    up_loader = torch.utils.data.DataLoader(up_data, batch_size=4, collate_fn=up_data.collate_fn)
    expected = up.fine_tuning.evaluate(up_args, up_loader, CpuEngine(theirs, None), theirs, phase="test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNISIGN_ROOT", str(world))
        importlib.reload(config)
        args = parse_args(*flags, "--dtype", "fp32", "--output_dir", str(tmp_path / "ours"))
        data = datasets.S2T_Dataset(label_path, args, "test")
    importlib.reload(config)
    args.device = torch.device("cpu")
    loader = torch.utils.data.DataLoader(data, batch_sampler=ShardedBatchSampler(len(data), 4),
                                         collate_fn=data.collate_fn)
    metrics = fine_tuning.evaluate(CpuEngine(ours, None), loader, args, "test", provider=None)

    def written(who, kind):
        lines = (tmp_path / who / f"test_tmp_{kind}.txt").read_text("utf-8").splitlines()
        return [line.split(", ", 1) for line in lines]

    # Upstream writes CSL-Daily's texts as it scores them (per character); ours writes them as generated.
    (names, predictions), (up_names, up_predictions) = (zip(*written(who, "pres")) for who in ("ours", "theirs"))
    refs, up_refs = ([r for _, r in written(who, "refs")] for who in ("ours", "theirs"))
    strip = len("prediction: ")
    assert names == up_names and len(names) == len(data) >= 8
    prepared_refs, prepared = prepare_csl_daily([r[len("ground-truth: "):] for r in refs],
                                                [p[strip:] for p in predictions])
    assert prepared == [p[strip:] for p in up_predictions]
    assert prepared_refs == [r[len("ground-truth: "):] for r in up_refs]
    assert len(set(prepared)) > 1  # the samples' inputs made a difference
    assert set(expected) == {"loss", "bleu1", "bleu2", "bleu3", "bleu4", "rouge"}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key

@pytest.mark.parametrize("dtype,zero,offload", [("bf16", 2, False), ("fp16", 2, True), ("bf16", 3, True)])
def test_deepspeed_settings_that_change_numbers_equal_upstreams(up, dtype, zero, offload):
    from uni_sign_ext.deepspeed_setup import deepspeed_config

    argv = ["--dtype", dtype, "--zero_stage", str(zero), "--batch-size", "3", "--gradient-accumulation-steps", "2",
            "--gradient-clipping", "0.5"] + (["--offload"] if offload else [])
    args = upstream_args(argv=argv)
    theirs = up.utils.get_train_ds_config(offload=args.offload, dtype=args.dtype, stage=args.zero_stage, args=args)
    theirs.update(train_micro_batch_size_per_gpu=args.batch_size, gradient_clipping=args.gradient_clipping,
                  gradient_accumulation_steps=args.gradient_accumulation_steps)  # as upstream's init_deepspeed
    ours = deepspeed_config(parse_args(*argv))
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ours[key] == theirs[key], key
    assert ours["zero_optimization"]["stage"] == theirs["zero_optimization"]["stage"]
    offloaded = {"device": "cpu"} if offload else {"device": "none"}
    assert ours["zero_optimization"].get("offload_optimizer", {"device": "none"}) == offloaded
    if zero == 3:
        assert ours["zero_optimization"].get("offload_param", {"device": "none"}) == offloaded
    precision = {"bf16": theirs.get("bfloat16", {"enabled": False}), "fp16": theirs.get("fp16", {"enabled": False})}
    for section, settings in precision.items():
        assert {k: ours[section].get(k) for k in settings} == settings, section
        assert ours[section]["enabled"] == (dtype == section)

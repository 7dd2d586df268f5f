"""bench/benchmark.py: its RGB-pose variants build the batch the model reads and run a training step and beam
search on the tiny mT5; the committed CPU results' markdown is what write_results makes of their JSON."""
import argparse
import json
import math
import random
import sys

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import benchmark  # noqa: E402

RESULTS = REPO / "bench" / "results" / "CPU__x86_64__2_threads_small"


def test_variant_names_split_into_rgb_and_text_mode():
    assert [benchmark.split_variant(v) for v in benchmark.VARIANTS] == [
        (False, "baseline"), (False, "cached"), (False, "uncached"), (False, "per_frame"),
        (True, "baseline"), (True, "cached")]


def test_synthetic_support_is_the_collated_layout_with_ten_percent_of_the_frames_per_hand():
    src, tgt, per_frame = benchmark.synthetic_batch(3, 64, random.Random(0), torch.Generator().manual_seed(0))
    pose_only = benchmark.synthetic_batch(3, 64, random.Random(0))
    assert per_frame == pose_only[2] and tgt == pose_only[1]  # the crops do not change the texts
    k = math.ceil(0.1 * 64)
    for hand in ("left", "right"):
        assert src[f"{hand}_hands"].shape == (3 * k, 3, 112, 112)
        assert src[f"{hand}_skeletons_norm"].shape == (3 * k, 21, 2)
        assert src[f"{hand}_rgb_len"] == [k] * 3
        for video in src[f"{hand}_sampled_indices"].view(3, k):
            assert video.dtype == torch.int64 and bool((video.diff() > 0).all()) and 0 <= video.min() <= video.max() < 64


@pytest.mark.parametrize("variant", ["rgb_cached"])
def test_rgb_variant_trains_and_generates_on_the_tiny_mt5(tiny_mt5, tmp_path, variant):
    from uni_sign_ext.fixture_video import write_random_backbone_weights

    write_random_backbone_weights(tmp_path / benchmark.RGB_WEIGHTS)
    args = dict(mt5=tiny_mt5, cache=str(tmp_path / "cache"), rgb_weights=str(tmp_path / benchmark.RGB_WEIGHTS),
                device="cpu", batch=2, frames=12, steps=1, warmup=0)
    benchmark.measure(argparse.Namespace(variant="fill_cache", **args))
    result = benchmark.measure(argparse.Namespace(variant=variant, **args))
    assert result["steps"] == 1 and result["step_s"] > 0 and result["eval_batch_s"] > 0
    assert result["encoder_loaded"] is False  # every text came from the filled cache


def test_rgb_model_loads_the_backbone_file_and_opens_the_gate(tiny_mt5, tmp_path):
    from uni_sign_ext.fixture_video import write_random_backbone_weights
    from utils import get_args_parser

    weights = tmp_path / benchmark.RGB_WEIGHTS
    write_random_backbone_weights(weights)
    model_args = get_args_parser().parse_args(["--mt5_path", tiny_mt5, "--rgb_support", "--rgb_backbone_weights",
                                               str(weights)])
    torch.manual_seed(123)  # another random init than the file's
    model = benchmark.build_model(model_args, torch.device("cpu"))
    assert model.training
    state = torch.load(weights, weights_only=True)
    assert torch.equal(model.rgb_support_backbone.state_dict()["0.0.0.weight"], state["0.0.weight"])
    assert any(bool(p.ne(0).any()) for p in model.fusion_gate.parameters())


def test_committed_markdown_is_written_from_the_committed_json(tmp_path):
    results = json.loads(RESULTS.with_suffix(".json").read_text())
    benchmark.write_results(results, tmp_path)
    assert (tmp_path / RESULTS.with_suffix(".md").name).read_text() == RESULTS.with_suffix(".md").read_text()


@pytest.fixture
def rgb_root(rgb_world, monkeypatch):
    from conftest import config_rooted_at

    yield from config_rooted_at(rgb_world, monkeypatch)


def test_rgb_data_breakdown_times_each_part_of_our_path(rgb_root):
    """bench/rgb_data.py --breakdown wraps the functions our data path calls: a part the path no longer goes
    through (a renamed function, a bypassed step) shows as an error or a zero here."""
    import rgb_data

    samples, ((wall, cpu),) = rgb_data.ours(rgb_root, [0])
    assert samples > 0 and wall > 0 and cpu > 0
    parts = rgb_data.breakdown(rgb_root, [0])
    assert list(parts) == ["total", "decoding", "rgb24 conversion", "Pillow resize", "pose path", "rest"]
    timed = {k: v for k, v in parts.items() if k != "rest"}
    assert all(v > 0 for v in timed.values()), timed
    assert parts["decoding"] + parts["rgb24 conversion"] + parts["Pillow resize"] < parts["total"]

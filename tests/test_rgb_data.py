"""The data side of --rgb_support (the RGB spec UNI_SIGN_RGB.md, §2–§7) on hand-made arrays and the video world.

Upstream's code itself is run side by side in test_rgb_data_reference.py; these tests pin the rules one at a
time, so that a broken rule is named (left/right, RNG use of an absent hand, ceil, truncation, `start`…).
"""
import gzip
import importlib
import json
import math
import pickle
import random
import shutil

import numpy as np
import pytest
import torch

from conftest import config_rooted_at
from uni_sign_ext.hand_crops import (HANDS, HandChoice, choose_hand_frames, choose_hands, collate_support,
                                     crop_boxes, crop_image, support_dict)

KEYS = ["left_sampled_indices", "left_hands", "left_skeletons_norm",
        "right_sampled_indices", "right_hands", "right_skeletons_norm"]


def make_scores(frames, left=0.9, right=0.9, dtype=np.float32):
    """(T, 1, 133) scores: every keypoint 0.9, each hand's 21 set to `left` / `right` (scalars or per frame)."""
    scores = np.full((frames, 1, 133), 0.9, dtype)
    scores[:, 0, 91:112] = np.asarray(left, dtype).reshape(-1, 1)
    scores[:, 0, 112:133] = np.asarray(right, dtype).reshape(-1, 1)
    return scores


def rng_state():
    state = np.random.get_state()
    return state[1].copy(), state[2]


# ---- §2 frame choice -------------------------------------------------------------------------------------------

def test_absent_hand_uses_no_randomness():
    scores = make_scores(30, left=0.2, right=[0.31] * 10 + [0.29] * 20)  # left: mean 0.2 ≤ 0.3 everywhere
    np.random.seed(5)
    before = rng_state()
    assert choose_hand_frames(scores, "left") is None
    after = rng_state()
    assert np.array_equal(before[0], after[0]) and before[1] == after[1]
    # the right hand is drawn from the untouched stream: exactly upstream's call, made by hand here
    right = choose_hand_frames(scores, "right")
    np.random.seed(5)
    tips = scores[:10, 0, [116, 120, 124, 128, 132]].min(-1)
    weights = tips.max() - tips + 1e-5
    expected = np.sort(np.random.choice(list(range(10)), size=1, replace=False, p=weights / weights.sum()))
    assert right.tolist() == expected.tolist() and right.dtype == np.int64
    assert set(right) <= set(range(10))  # only frames whose mean score is > 0.3


@pytest.mark.parametrize("n", [1, 5, 9, 10, 11, 19, 20, 21, 35])
def test_sample_size_is_ceil_of_a_tenth(n):
    scores = make_scores(n + 3, left=[0.9] * n + [0.1] * 3)
    np.random.seed(0)
    chosen = choose_hand_frames(scores, "left")
    assert len(chosen) == math.ceil(n / 10) and len(set(chosen)) == len(chosen)
    assert list(chosen) == sorted(chosen) and max(chosen) < n


def test_draw_favours_the_lowest_fingertip_confidence():
    scores = make_scores(10)
    scores[3, 0, [95, 99, 103, 107, 111]] = [0.9, 0.9, 0.35, 0.9, 0.9]  # frame 3: one weak fingertip
    for seed in range(20):  # weights: frame 3 ≈ 0.55, the others 1e-5
        np.random.seed(seed)
        assert choose_hand_frames(scores, "left").tolist() == [3]


def test_draw_is_upstreams_call_left_then_right():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.2, 1.0, (40, 1, 133)).astype(np.float32)
    keypoints = rng.uniform(0, 1, (40, 1, 133, 2))
    np.random.seed(11)
    choice = choose_hands(keypoints, scores)
    np.random.seed(11)
    expected = {}
    for hand, (points, tips) in (("left", (slice(91, 112), [95, 99, 103, 107, 111])),
                                 ("right", (slice(112, 133), [116, 120, 124, 128, 132]))):
        confident = np.where(scores[:, 0, points].mean(-1) > 0.3)[0]
        f = scores[confident][:, 0, tips].min(-1)
        w = np.max(f) - f + 1e-5
        p = w / np.sum(w)
        assert p.dtype == np.float32
        expected[hand] = np.sort(np.random.choice(confident.tolist(), size=int(np.ceil(0.1 * len(confident))),
                                                  replace=False, p=p))
    for hand in ("left", "right"):
        assert choice.positions[hand].tolist() == expected[hand].tolist()
    assert np.array_equal(choice.points["left"], keypoints[expected["left"], 0, 91:112])
    assert np.array_equal(choice.points["right"], keypoints[expected["right"], 0, 112:133])


def test_left_is_coco_91_to_111():
    scores = make_scores(20, left=[0.9] * 10 + [0.1] * 10, right=[0.1] * 10 + [0.9] * 10)
    np.random.seed(0)
    choice = choose_hands(np.zeros((20, 1, 133, 2)), scores)
    assert all(p < 10 for p in choice.positions["left"]) and all(p >= 10 for p in choice.positions["right"])
    assert HANDS["left"][0] == slice(91, 112) and HANDS["right"][0] == slice(112, 133)


# ---- §4 boxes, §5 crops ----------------------------------------------------------------------------------------

def hand(x0, x1, y0, y1):
    """(21, 2) points spanning [x0, x1] × [y0, y1] (normalised)."""
    points = np.full((21, 2), [x0, y0], np.float64)
    points[1] = [x1, y1]
    return points


def test_box_size_and_truncation_by_hand():
    height, width = 100, 200
    left = np.stack([hand(0.10, 0.205, 0.50, 0.55),   # 21 px wide, 5 px high; centre (30.5, 52.5)
                     hand(0.00, 0.044, 0.50, 0.55)])  # centre x 4.4: its box starts at -7.6 → -7
    left_boxes, right_boxes, size = crop_boxes(left, None, height, width)
    assert size == 24  # int(21 × 1.2 / 2) × 2 = int(12.6) × 2
    assert left_boxes.dtype == np.int16
    assert left_boxes.tolist() == [[18, 40, 42, 64], [-7, 40, 16, 64]]  # toward zero, not floor (-8)
    assert right_boxes.shape == (1, 4)  # the absent hand's one zero frame
    # one size for both hands: the larger extent (right, 40 px high) wins
    _, right_boxes, size = crop_boxes(left, np.stack([hand(0.5, 0.52, 0.2, 0.6)]), height, width)
    assert size == 48 and right_boxes.tolist() == [[78, 16, 126, 64]]


def test_box_size_zero_when_hands_are_points():
    _, _, size = crop_boxes(np.stack([hand(0.3, 0.3, 0.4, 0.4)]), None, 120, 160)
    assert size == 0


def test_crop_follows_numpy_slicing_and_pads_bottom_right():
    frame = np.tile(np.arange(10, dtype=np.uint8)[None, :, None], (10, 1, 3))  # value = column
    assert not crop_image(frame, (-3, 0, 5, 4), 8).any()  # 7:5 is empty: all black
    strip = crop_image(frame, (-3, 0, 9, 4), 8)  # columns 7, 8 from the far edge
    assert strip.shape == (8, 8, 3) and strip[:4, :2, 0].tolist() == [[7, 8]] * 4 and not strip[4:].any()
    inside = crop_image(frame, (2, 1, 6, 5), 4)
    assert inside[..., 0].tolist() == [[2, 3, 4, 5]] * 4


# ---- §6 the dict, fallbacks --------------------------------------------------------------------------------------

def check_fallback(d, hand):
    assert d[f"{hand}_sampled_indices"].tolist() == [-1] and d[f"{hand}_sampled_indices"].dtype == torch.int64
    assert d[f"{hand}_hands"].shape == (1, 3, 112, 112) and d[f"{hand}_hands"].dtype == torch.float32
    assert d[f"{hand}_skeletons_norm"].shape == (1, 21, 2) and d[f"{hand}_skeletons_norm"].dtype == torch.float32
    assert not d[f"{hand}_hands"].any() and not d[f"{hand}_skeletons_norm"].any()


def no_decode(frames):
    raise AssertionError("the video must not be opened")


def test_both_hands_absent_never_opens_the_video():
    d = support_dict(HandChoice({"left": None, "right": None}, {"left": None, "right": None}), np.arange(5), no_decode)
    assert list(d) == KEYS
    check_fallback(d, "left")
    check_fallback(d, "right")


def test_one_absent_hand_and_the_decoded_frames():
    frames = np.array([7, 9, 12, 13, 20, 31])  # sampled original frames, `start` included
    points = np.stack([hand(0.2, 0.3, 0.2, 0.4), hand(0.6, 0.7, 0.5, 0.7)]).astype(np.float32)
    asked = []

    def decode(wanted):
        asked.append(list(wanted))
        return np.full((len(wanted), 120, 160, 3), 200, np.uint8)

    choice = HandChoice({"left": np.array([1, 4]), "right": None}, {"left": points, "right": None})
    d = support_dict(choice, frames, decode)
    assert asked == [[9, 20]]  # frames[positions], not the positions themselves
    assert list(d) == KEYS
    check_fallback(d, "right")
    assert d["left_sampled_indices"].tolist() == [1, 4] and d["left_sampled_indices"].dtype == torch.int64
    assert d["left_hands"].shape == (2, 3, 112, 112) and d["left_hands"].dtype == torch.float32
    assert d["left_skeletons_norm"].dtype == torch.float64  # float32 keypoints × (W, H) → float64, as upstream
    norm = d["left_skeletons_norm"]
    assert norm.shape == (2, 21, 2) and float(norm.min()) >= 0 and float(norm.max()) <= 1


def test_degenerate_boxes_give_the_fallback_for_both_hands():
    choice = HandChoice({"left": np.array([0]), "right": np.array([0])},
                        {"left": np.stack([hand(0.5, 0.5, 0.5, 0.5)]), "right": np.stack([hand(0.2, 0.2, 0.2, 0.2)])})
    d = support_dict(choice, np.arange(3), lambda f: np.zeros((len(f), 120, 160, 3), np.uint8))
    check_fallback(d, "left")
    check_fallback(d, "right")


def test_collate_concatenates_and_lists_lengths():
    fallback = support_dict(HandChoice({"left": None, "right": None}, {"left": None, "right": None}), [0], no_decode)
    present = {"left_sampled_indices": torch.tensor([2, 5]), "left_hands": torch.ones(2, 3, 112, 112),
               "left_skeletons_norm": torch.ones(2, 21, 2, dtype=torch.float64),
               **{k: v for k, v in fallback.items() if k.startswith("right")}}
    out = collate_support([present, fallback])
    assert out["left_rgb_len"] == [2, 1] and out["right_rgb_len"] == [1, 1]
    assert out["left_sampled_indices"].tolist() == [2, 5, -1]
    assert out["left_skeletons_norm"].dtype == torch.float64 and out["left_skeletons_norm"].shape == (3, 21, 2)
    assert out["left_hands"].shape == (3, 3, 112, 112) and out["right_hands"].shape == (2, 3, 112, 112)


# ---- the dataset on the video world -------------------------------------------------------------------------------

@pytest.fixture
def rgb_root(rgb_world, monkeypatch, tmp_path):
    """A private copy of the video world's CSL_Daily (tests damage it), with config pointing at it."""
    for sub in ("data/CSL_Daily", "dataset/CSL_Daily", "pretrained_weight"):
        shutil.copytree(rgb_world / sub, tmp_path / sub)
    yield from config_rooted_at(tmp_path, monkeypatch)


def dataset(phase, *flags):
    import config
    import datasets
    from conftest import parse_args

    args = parse_args("--dataset", "CSL_Daily", "--rgb_support", *flags)
    return datasets.S2T_Dataset(getattr(config, f"{phase}_label_paths")["CSL_Daily"], args, phase)


def labels(root, split):
    with gzip.open(root / "data" / "CSL_Daily" / f"labels.{split}", "rb") as f:
        return list(pickle.load(f).values())


def video_of(root, entry):
    return root / "dataset" / "CSL_Daily" / "sentence-crop" / entry["video_path"]


def pose_of(root, entry):
    return root / "dataset" / "CSL_Daily" / "pose_format" / (entry["video_path"][:-4] + ".pkl")


def unnormalise(images):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return images * std + mean


def test_world_items_have_upstreams_dict(rgb_root):
    from datasets import Flagged, SkippedSample

    ds = dataset("train")
    random.seed(0)
    np.random.seed(0)
    items = [ds[i] for i in range(len(ds))]
    assert not any(isinstance(it, (Flagged, SkippedSample)) for it in items)
    fallbacks = 0
    for item in items:
        d = item[4]
        assert list(d) == KEYS
        for hand in ("left", "right"):
            if d[f"{hand}_sampled_indices"].tolist() == [-1]:
                check_fallback(d, hand)
                fallbacks += 1
                continue
            k = len(d[f"{hand}_sampled_indices"])
            assert d[f"{hand}_hands"].shape == (k, 3, 112, 112) and d[f"{hand}_skeletons_norm"].shape == (k, 21, 2)
            assert d[f"{hand}_skeletons_norm"].dtype == torch.float64
            assert d[f"{hand}_sampled_indices"].max() < len(item[1]["body"])
            # the world draws the signer's left hand reddish, the right hand bluish
            rgb = unnormalise(d[f"{hand}_hands"]).mean((0, 2, 3))
            if hand == "right" and int(item[0][9:13]) % 6 == 2:
                # signer at the left edge: the boxes start at negative x, so (as upstream) numpy reads the
                # far edge of the frame, not the hand
                assert abs(float(rgb[2] - rgb[0])) < 0.05, (item[0], rgb)
                continue
            assert (rgb[0] > rgb[2]) if hand == "left" else (rgb[2] > rgb[0]), (item[0], hand, rgb)
    assert fallbacks >= 3  # the world's right-hand-less and hand-less samples
    src, _ = ds.collate_fn(items[:4])
    for hand in ("left", "right"):
        lengths = [len(it[4][f"{hand}_sampled_indices"]) for it in items[:4]]
        assert src[f"{hand}_rgb_len"] == lengths
        assert src[f"{hand}_hands"].shape == (sum(lengths), 3, 112, 112)
        assert src[f"{hand}_sampled_indices"].shape == (sum(lengths),)
        assert src[f"{hand}_skeletons_norm"].shape == (sum(lengths), 21, 2)


def test_decoded_frames_are_the_sampled_frames_with_start(rgb_root, monkeypatch):
    """Frames decoded = the pose sampler's original frames (start included) at the chosen positions."""
    import uni_sign_ext.rgb_support as rgb_support
    from uni_sign_ext.pose import load_pose_sample

    asked = []
    real = rgb_support.read_frames
    monkeypatch.setattr(rgb_support, "read_frames", lambda path, frames: asked.append(list(frames)) or
                        real(path, frames))
    ds = dataset("train", "--max_length", "32")
    entries = labels(rgb_root, "train")
    starts = [i for i, e in enumerate(entries) if "start" in pickle.load(open(pose_of(rgb_root, e), "rb"))]
    assert starts, "the world has clips with a start offset"
    for i in starts:
        asked.clear()
        random.seed(i)
        np.random.seed(i)
        d = ds[i][4]
        random.seed(i)
        sample = load_pose_sample(str(pose_of(rgb_root, entries[i])), 32)
        positions = np.unique(np.concatenate([d[f"{h}_sampled_indices"].numpy() for h in ("left", "right")]))
        positions = positions[positions >= 0]
        assert asked == [sample.frames[positions].tolist()]
        assert min(asked[0]) >= pickle.load(open(pose_of(rgb_root, entries[i]), "rb"))["start"]


def test_only_the_hand_boxes_are_converted_to_rgb(rgb_root, monkeypatch):
    """Speed: a sample converts the parts of its frames that the crops read, never a whole frame (the dicts
    still equal upstream's: tests/test_rgb_data_reference.py)."""
    from uni_sign_ext import video

    parts = []
    real = video._convert_part
    monkeypatch.setattr(video.Frame, "whole", lambda self: pytest.fail("a whole frame was converted to rgb24"))
    monkeypatch.setattr(video, "_convert_part", lambda *a: parts.append(a[2:]) or real(*a))
    ds = dataset("train")
    for i in range(len(ds)):
        ds[i]
    assert len(parts) > len(ds)


def test_evaluation_draws_do_not_depend_on_the_global_stream(rgb_root):
    ds = dataset("test")
    np.random.seed(0)
    first = ds[0][4]
    np.random.seed(123)
    np.random.rand(7)
    again = ds[0][4]
    for key in KEYS:
        assert torch.equal(first[key], again[key])


# ---- bad input ---------------------------------------------------------------------------------------------------

def damage(root, split):
    """Damage four samples of a split in four ways → {name: expected words in the reason}."""
    entries = [e for e in labels(root, split)]
    missing, truncated, short, pixels = entries[0], entries[1], entries[2], entries[3]
    video_of(root, missing).unlink()
    data = video_of(root, truncated).read_bytes()
    video_of(root, truncated).write_bytes(data[: len(data) // 3])
    from uni_sign_ext.fixture_video import write_video

    pose = pickle.load(open(pose_of(root, short), "rb"))
    write_video(video_of(root, short), np.stack(pose["keypoints"])[:2])  # 2 frames only
    pose = pickle.load(open(pose_of(root, pixels), "rb"))
    pose["keypoints"] = [k * (1280, 720) for k in pose["keypoints"]]  # pixels, not normalised
    pickle.dump(pose, open(pose_of(root, pixels), "wb"))
    return {missing["name"]: "video file not found", truncated["name"]: "unreadable video",
            short["name"]: "decodable frames", pixels["name"]: "not normalised"}


def test_bad_videos_are_counted_skips_in_training(rgb_root):
    from datasets import Flagged

    expected = damage(rgb_root, "train")
    ds = dataset("train")
    random.seed(0)
    np.random.seed(0)
    items = [ds[i] for i in range(len(ds))]
    skipped = {s.name: s for it in items if isinstance(it, Flagged) for s in it.skipped}
    assert set(skipped) == set(expected)
    for name, words in expected.items():
        assert words in skipped[name].reason and skipped[name].path, skipped[name]
    assert "not normalised" in skipped[list(expected)[3]].reason and skipped[list(expected)[3]].path.endswith(".pkl")
    src, _ = ds.collate_fn(items[:4])
    assert len(src["skipped"]) >= 1 and len(src["left_rgb_len"]) == 4  # replaced: the batch keeps its size


def test_bad_videos_are_dropped_and_counted_in_evaluation(rgb_root):
    from datasets import SkippedSample

    expected = damage(rgb_root, "dev")
    ds = dataset("dev")
    items = [ds[i] for i in range(len(ds))]
    skipped = {it.name: it for it in items if isinstance(it, SkippedSample)}
    assert set(skipped) == set(expected)
    src, _ = ds.collate_fn(items[:6])
    assert {s.name for s in src["skipped"]} == set(expected) and len(src["name_batch"]) == 2
    assert len(src["left_rgb_len"]) == 2 and src["left_hands"].shape[0] == sum(src["left_rgb_len"])


def test_checklist_names_bad_videos(rgb_root, capsys):
    import pre_training_checklist

    expected = damage(rgb_root, "test")
    code = pre_training_checklist.main(["--dataset", "CSL_Daily", "--rgb_support", "--json"])
    report = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    videos = report["videos test"]
    assert videos["status"] == "warn" and videos["fix"]
    assert all(n in videos["detail"] for n in expected), videos["detail"]
    assert "1 of 12 samples have no video" in videos["detail"] and "3 are unusable" in videos["detail"]
    assert "unreadable video" in videos["detail"] and "not normalised" in videos["detail"]
    assert report["videos train"]["status"] == "pass"
    assert code == 0  # bad videos are skipped samples: a warning, not a failure


# ---- where videos are read from -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,split,expected", [
    ("CSL_Daily", "train", "dataset/CSL_Daily/sentence-crop"),
    ("CSL_News", "dev", "dataset/CSL_News/rgb_format"),
    ("WLASL", "dev", "dataset/WLASL/rgb_format/dev"),
    ("How2Sign", "dev", "dataset/How2Sign/rgb_format/test"),  # How2Sign's dev is its test split
    ("OpenASL", "test", "dataset/OpenASL/rgb_format/test"),
])
def test_video_folders(name, split, expected):
    import os

    import config
    from conftest import parse_args
    from uni_sign_ext.rgb_support import rgb_folder

    label_path = getattr(config, f"{split}_label_paths")[name]
    assert rgb_folder(config.rgb_dirs, parse_args("--dataset", name, "--rgb_support"), label_path) == \
        os.path.join(config.ROOT, expected)
    assert rgb_folder(config.rgb_dirs, parse_args("--dataset", name), label_path) is None


def test_csl_news_reads_its_entrys_video(rgb_world, monkeypatch, tmp_path):
    """S2T_Dataset_news opens rgb_dirs['CSL_News']/<video> (the world films CSL-News for stage 2); without that
    file the sample is a counted skip naming the path."""
    import config
    import datasets
    from conftest import parse_args

    args = parse_args("--dataset", "CSL_News", "--rgb_support")
    gen = config_rooted_at(rgb_world, monkeypatch)
    next(gen)
    try:
        ds = datasets.S2T_Dataset_news(config.dev_label_paths["CSL_News"], args, "dev")
        name, support = ds[0][0], ds[0][-1]  # (name, pose, text, gloss, support dict)
        assert name == ds.items[0]["video"] and {"left_hands", "right_hands"} <= set(support)
        ds.rgb_dir = str(tmp_path)  # a folder without the video
        item = ds[0]
    finally:
        next(gen, None)
    assert isinstance(item, datasets.SkippedSample) and "video file not found" in item.reason
    assert item.path == str(tmp_path / ds.items[0]["video"])


def test_video_world(rgb_world):
    """--videos: an H.264 mp4 per CSL_Daily sample with every frame of its pose file; poses normalised float64."""
    import av

    checked = 0
    for split in ("train", "dev", "test"):
        for entry in labels(rgb_world, split)[:3]:
            pose = pickle.load(open(pose_of(rgb_world, entry), "rb"))
            keypoints = np.stack(pose["keypoints"])
            assert keypoints.dtype == np.float64 and np.stack(pose["scores"]).dtype == np.float32
            assert -0.5 < keypoints.min() and keypoints.max() < 1.0
            with av.open(str(video_of(rgb_world, entry))) as container:
                stream = container.streams.video[0]
                assert stream.codec_context.name == "h264"
                frames = sum(1 for _ in container.decode(stream))
                assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
            assert frames == len(keypoints)
            checked += 1
    assert checked == 9
    assert json.loads((rgb_world / ".complete").read_text())["videos"] is True

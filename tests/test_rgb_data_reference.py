"""Our --rgb_support data path beside upstream's own datasets.py, on the video world's mp4 files, same seeds.

Upstream's RGB path needs torchvision, which cannot be imported beside this project's torch, so it runs in a
second python that has it (UNISIGN_TV_PYTHON, default .venv_tv/bin/python: scripts/reference_env.sh) through
tests/rgb_reference_runner.py; these tests skip, saying why, when that python or upstream is missing.
About the frames: upstream decodes with decord (0.6.0, requirements-test.txt); the runner uses the real one when
that python can import it, else a test-only stand-in built on PyAV (the library our uni_sign_ext/video.py uses,
so a comparison run with it cannot show that PyAV equals decord). Which one ran is the test
test_upstream_ran_real_decord: passed, or skipped naming the stand-in. Ours vs real decord, frame by frame, on
more clips and codecs: tests/test_decord_frames.py (identical for the H.264 clips here; decord is off after a
seek for MPEG-4 Part 2 with B-frames and H.264 open GOPs).
"""
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import config_rooted_at
from upstream import require_upstream

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "rgb_reference_runner.py"
SEEDS = (0, 1, 2)
MAX_LENGTHS = (256, 40)  # 40 < most clips: random frame sampling (and `start`) in play
TOLERANCE = 1e-6


def reference_python():
    python = os.environ.get("UNISIGN_TV_PYTHON", str(REPO / ".venv_tv" / "bin" / "python"))
    if not Path(python).is_file():
        pytest.skip(f"no python with torchvision at {python} (bash scripts/reference_env.sh, or set UNISIGN_TV_PYTHON): upstream's RGB data path "
                    "imports torchvision, which cannot be imported beside this project's torch")
    probe = subprocess.run([python, "-c", "import torchvision, av, PIL"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"{python} cannot import torchvision, av and PIL: {probe.stderr.strip().splitlines()[-1:]}")
    return python


@pytest.fixture(scope="module")
def reference(rgb_world, tmp_path_factory):
    upstream = require_upstream()
    python = reference_python()
    out = tmp_path_factory.mktemp("rgb_reference") / "reference.pt"
    proc = subprocess.run([python, str(RUNNER), str(upstream), str(rgb_world), str(out),
                           "--seeds", *map(str, SEEDS), "--max_length", *map(str, MAX_LENGTHS)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=False)


@pytest.fixture
def video_root(rgb_world, monkeypatch):
    yield from config_rooted_at(rgb_world, monkeypatch)


def our_items(max_length, seed):
    import config
    import datasets
    from conftest import parse_args

    args = parse_args("--dataset", "CSL_Daily", "--rgb_support", "--max_length", str(max_length))
    ds = datasets.S2T_Dataset(config.train_label_paths["CSL_Daily"], args, "train")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return ds, [ds[i] for i in range(len(ds))]


def assert_same(ours, theirs, where):
    if isinstance(theirs, list):
        assert ours == theirs, where
        return
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (where, ours.dtype, theirs.dtype,
                                                                       ours.shape, theirs.shape)
    if ours.numel():
        assert (ours.double() - theirs.double()).abs().max().item() <= TOLERANCE, where


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
@pytest.mark.parametrize("seed", SEEDS)
def test_support_dicts_and_batches_equal_upstreams(reference, video_root, max_length, seed):
    expected = reference[f"{max_length}/{seed}"]
    ds, items = our_items(max_length, seed)
    assert [it[0] for it in items] == expected["names"]
    absent = present = 0
    for item, theirs in zip(items, expected["dicts"]):
        assert list(item[4]) == list(theirs), item[0]  # same keys, same order
        for key in theirs:
            assert_same(item[4][key], theirs[key], (item[0], key))
        for hand in ("left", "right"):
            if theirs[f"{hand}_sampled_indices"].tolist() == [-1]:
                absent += 1
            else:
                present += 1
    assert absent >= 3 and present >= 15  # both the fallbacks and real crops were compared
    batches = [ds.collate_fn(items[b:b + 4])[0] for b in range(0, len(items), 4)]
    assert len(batches) == len(expected["batches"])
    for ours, theirs in zip(batches, expected["batches"]):
        for key, value in theirs.items():
            assert_same(ours[key], value, key)
        assert [k for k in ours if k.startswith(("left_", "right_"))] == list(theirs)


def test_upstream_ran_real_decord(reference):
    """Says which decoder upstream's side used: a skip (shown in the summary) when it was the PyAV stand-in."""
    if reference["decoder"] != "decord stand-in on PyAV":
        assert reference["decoder"].startswith("decord ") and reference["decoder"].endswith("(real)")
        return
    pytest.skip(f"upstream's frames came from the PyAV decord stand-in: {reference_python()} cannot import decord "
                "(pip install -r requirements-test.txt there); the equalities above are then PyAV vs PyAV")


def test_pyav_frames_equal_the_decord_stand_in(rgb_world):
    """Our decoder and the stand-in give the same frames (same library, PyAV, so this only shows that both
    index frames the same way and read rgb24; ours == real decord: tests/test_decord_frames.py)."""
    sys.path.insert(0, str(RUNNER.parent))
    from rgb_reference_runner import VideoReader
    from uni_sign_ext.video import read_frames

    video = sorted((rgb_world / "dataset" / "CSL_Daily" / "sentence-crop").glob("*.mp4"))[0]
    frames = [0, 1, 5, 17]
    theirs = VideoReader(str(video), num_threads=1).get_batch(frames).asnumpy()
    ours = np.stack(read_frames(str(video), frames))
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape == (4, 120, 160, 3)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours[0], ours[1])  # consecutive frames differ: an off-by-one would show

"""Keypoint part selection, normalisation and frame sampling against hand-derived values."""
import pickle
import random

import numpy as np
import pytest

from uni_sign_ext.pose import (PART_KEYPOINTS, PoseFileError, load_pose_sample, normalise_parts,
                               read_pose_file, sample_frame_indices)


def blank_pose(frames=2, score=1.0):
    return np.zeros((frames, 133, 2), np.float32), np.full((frames, 133), score, np.float32)


def test_part_indices():
    assert PART_KEYPOINTS["body"] == [0, 3, 4, 5, 6, 7, 8, 9, 10]
    assert PART_KEYPOINTS["left"] == list(range(91, 112))
    assert PART_KEYPOINTS["right"] == list(range(112, 133))
    assert PART_KEYPOINTS["face_all"] == [23, 25, 27, 29, 31, 33, 35, 37, 39, 83, 84, 85, 86, 87, 88, 89, 90, 53]


def test_body_normalisation_by_hand():
    kps, scores = blank_pose(frames=1)
    body = PART_KEYPOINTS["body"]
    # Body points spanning x 100..300 (width 200) and y 50..150 (height 100): scale = 200.
    xy = [(100, 50), (300, 150), (200, 100), (150, 75), (250, 125), (100, 150), (300, 50), (200, 50), (200, 150)]
    kps[0, body] = xy
    scores[0, body[-1]] = 0.2  # below the 0.3 threshold: excluded from the box and zeroed
    kps[0, body[-1]] = (1000, 1000)
    parts = normalise_parts(kps, scores)
    # origin = ((xmin + xmax - scale)/2, (ymin + ymax - scale)/2) = (100, 0)
    # x' = ((x - 100)/200 - 0.5)*2, y' = ((y - 0)/200 - 0.5)*2
    expected = np.array([[((x - 100) / 200 - 0.5) * 2, (y / 200 - 0.5) * 2, 1.0] for x, y in xy[:-1]] + [[0, 0, 0]])
    np.testing.assert_allclose(parts["body"][0], expected, atol=1e-6)
    assert parts["body"][0, 0].tolist() == [-1.0, -0.5, 1.0]


def test_body_box_is_centred_on_both_axes():
    # x spans 100..300 (scale 200), y spans 60..160: origin = ((100 + 300 - 200)/2, (60 + 160 - 200)/2) = (100, 10),
    # so the box's centre (200, 110) maps to (0, 0) and the shorter side spans [-0.5, 0.5].
    kps, scores = blank_pose(frames=1)
    kps[0, PART_KEYPOINTS["body"]] = [(200, 110), (100, 60), (300, 160)] + [(200, 110)] * 6
    body = normalise_parts(kps, scores)["body"][0]
    np.testing.assert_allclose(body[:3], [[0, 0, 1], [-1, -0.5, 1], [1, 0.5, 1]], atol=1e-6)


def test_hands_and_face_relative_and_scaled_by_body():
    kps, scores = blank_pose(frames=1)
    kps[0, PART_KEYPOINTS["body"]] = [(0, 0), (400, 0), (0, 100), (400, 100), (200, 50)] + [(200, 50)] * 4
    kps[0, 91] = (300, 300)          # left wrist = anchor of the left hand
    kps[0, 92] = (340, 260)
    kps[0, 53] = (210, 20)           # anchor of the face
    kps[0, 23] = (190, 30)
    scores[0, 93] = 0.3              # exactly at the threshold: zeroed
    parts = normalise_parts(kps, scores)  # body scale = 400
    np.testing.assert_allclose(parts["left"][0, 0], [0, 0, 1])
    np.testing.assert_allclose(parts["left"][0, 1], [40 / 400, -40 / 400, 1])
    np.testing.assert_allclose(parts["left"][0, 2], [0, 0, 0])
    np.testing.assert_allclose(parts["face_all"][0, -1], [0, 0, 1])
    np.testing.assert_allclose(parts["face_all"][0, 0], [-20 / 400, 10 / 400, 1])
    assert {k: v.shape for k, v in parts.items()} == {
        "body": (1, 9, 3), "left": (1, 21, 3), "right": (1, 21, 3), "face_all": (1, 18, 3)}
    assert all(v.dtype == np.float32 for v in parts.values())


def test_relative_coordinates_clip_to_unit_range():
    kps, scores = blank_pose(frames=1)
    kps[0, PART_KEYPOINTS["body"]] = [(0, 0), (10, 10)] + [(5, 5)] * 7   # scale 10
    kps[0, 112], kps[0, 113] = (0, 0), (500, -500)
    parts = normalise_parts(kps, scores)
    np.testing.assert_allclose(parts["right"][0, 1], [1, -1, 1])


@pytest.mark.parametrize("valid_points", [0, 3])
def test_too_few_confident_body_points_zero_everything(valid_points):
    kps, scores = blank_pose(frames=1, score=0.0)
    kps += 100
    scores[0, PART_KEYPOINTS["body"][:valid_points]] = 1.0
    scores[0, 91:133] = 1.0
    parts = normalise_parts(kps, scores)
    assert all(not v.any() for v in parts.values())


def test_zero_scale_zeroes_everything():
    kps, scores = blank_pose(frames=3)
    kps[:] = (50, 50)  # all body points on one spot: scale 0
    parts = normalise_parts(kps, scores)
    assert all(not v.any() for v in parts.values())


def test_non_finite_points_count_as_undetected():
    kps, scores = blank_pose(frames=1)
    kps[0, PART_KEYPOINTS["body"]] = [(0, 0), (100, 100)] + [(50, 50)] * 7
    kps[0, 95] = (np.nan, 3)
    scores[0, 96] = np.inf
    parts = normalise_parts(kps, scores)
    assert np.isfinite(parts["left"]).all()
    assert not parts["left"][0, 4].any() and not parts["left"][0, 5].any()


def test_frame_sampling_short_and_long():
    np.testing.assert_array_equal(sample_frame_indices(5, 12, 256), np.arange(5, 12))
    rng = random.Random(0)
    frames = sample_frame_indices(100, 400, 64, rng)
    assert len(frames) == 64 and len(set(frames.tolist())) == 64
    assert (np.diff(frames) > 0).all() and frames.min() >= 100 and frames.max() < 400
    # Same draw as upstream's sorted(random.sample(range(duration), k)) + start
    expected = np.array(sorted(random.Random(0).sample(range(300), k=64))) + 100
    np.testing.assert_array_equal(frames, expected)


def write_pose(path, kps, scores, **extra):
    with open(path, "wb") as f:
        pickle.dump({"keypoints": [k[None] for k in kps], "scores": [s[None] for s in scores], **extra}, f)


def test_load_pose_sample_uses_start_end_and_returns_original_indices(tmp_path):
    kps, scores = blank_pose(frames=30)
    kps[:, :, 0] = np.arange(30)[:, None] * 10 + np.arange(133)[None] % 7
    kps[:, :, 1] = np.arange(133)[None] % 5 * 10
    write_pose(tmp_path / "a.pkl", kps, scores, start=10, end=20)
    parts, frames, clip_end, warnings = load_pose_sample(tmp_path / "a.pkl", max_length=256)
    assert clip_end == 20 and warnings == []
    np.testing.assert_array_equal(frames, np.arange(10, 20))
    assert parts["body"].shape == (10, 9, 3)
    direct = normalise_parts(kps[10:20], scores[10:20])
    np.testing.assert_array_equal(parts["left"], direct["left"])


@pytest.mark.parametrize("content,reason", [
    (b"not a pickle", "unreadable pickle"),
    (pickle.dumps({"keypoints": []}), "expected a dict with 'keypoints' and 'scores'"),
    (pickle.dumps({"keypoints": [], "scores": []}), "no frames"),
    (pickle.dumps({"keypoints": [np.zeros((1, 133, 2))] * 4, "scores": [np.zeros((1, 133))] * 4,
                   "start": 3, "end": 3}), "no usable frames"),
    (pickle.dumps({"keypoints": [np.zeros((1, 17, 2))], "scores": [np.zeros((1, 17))]}), "expected keypoints"),
])
def test_bad_pose_files_name_the_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(PoseFileError, match=reason) as err:
        read_pose_file(path)
    assert str(path) in str(err.value)


def test_truncated_pickle(tmp_path):
    kps, scores = blank_pose(frames=4)
    write_pose(tmp_path / "t.pkl", kps, scores)
    data = (tmp_path / "t.pkl").read_bytes()
    (tmp_path / "t.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(PoseFileError, match="unreadable pickle"):
        read_pose_file(tmp_path / "t.pkl")


def test_an_oversized_pose_file_is_refused_naming_the_limit(tmp_path, monkeypatch):
    from uni_sign_ext import pose

    monkeypatch.setattr(pose, "MAX_POSE_FILE_BYTES", 2 << 20)
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"\0" * (3 << 20))  # never unpickled: the size alone refuses it
    with pytest.raises(PoseFileError, match=r"3 MiB, more than the 2 MiB a pose file may have"):
        read_pose_file(path)

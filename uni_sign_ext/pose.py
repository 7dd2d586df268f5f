"""Pose files → the four normalised keypoint parts, vectorised over frames and keypoints.

Reproduces upstream Uni-Sign's frame sampling and normalisation (its datasets.py: `load_part_kp`,
`crop_scale`, the clip sampling in `load_pose`) and additionally returns the sampled *original* frame
indices, which description alignment needs.
"""
import os
import pickle
import random
from typing import NamedTuple

import numpy as np

SCORE_THRESHOLD = 0.3
PART_KEYPOINTS = {
    "body": [0, 3, 4, 5, 6, 7, 8, 9, 10],
    "left": list(range(91, 112)),
    "right": list(range(112, 133)),
    "face_all": list(range(23, 40, 2)) + list(range(83, 91)) + [53],
}
PART_ANCHOR = {"left": 0, "right": 0, "face_all": -1}  # node each part is made relative to
PARTS = ("body", "left", "right", "face_all")
NUM_KEYPOINTS = 133
MAX_POSE_FILE_BYTES = 1 << 30  # ~600k frames; anything larger is not one sign clip


class PoseFileError(ValueError):
    """A pose file that cannot be used; the message names the file and the reason."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _frame_bound(path, data, key, default):
    """The file's optional `start`/`end`: an integer (numpy ones too), or absent/None for the default."""
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise PoseFileError(path, f"'{key}' is {value!r}, not a frame number")


def read_pose_file(path, clip_bounds=True, raw=None):
    """Load and validate a pose pickle → (keypoints (N,133,2), scores (N,133), start, end).

    Without `clip_bounds` the file's `start`/`end` are ignored (every frame is usable), as upstream's
    CSL-News loader does. With a dict as `raw`, raw["keypoints"] (N,1,133,2) and raw["scores"] (N,1,133)
    receive the arrays in the file's own dtypes (the RGB path computes in them, as upstream does)."""
    try:
        size = os.path.getsize(path)
        if size > MAX_POSE_FILE_BYTES:
            raise PoseFileError(path, f"{size / 2**20:.0f} MiB, more than the {MAX_POSE_FILE_BYTES >> 20} MiB "
                                      "a pose file may have")
        with open(path, "rb") as f:
            data = pickle.load(f)
    except FileNotFoundError:
        raise PoseFileError(path, "pose file not found") from None
    except PoseFileError:
        raise
    except Exception as exc:  # truncated/corrupt pickles raise many different types
        raise PoseFileError(path, f"unreadable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "keypoints" not in data or "scores" not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise PoseFileError(path, f"expected a dict with 'keypoints' and 'scores', found {found}")
    try:
        if raw is None:
            keypoints = np.asarray(data["keypoints"], dtype=np.float32)
            scores = np.asarray(data["scores"], dtype=np.float32)
        else:
            raw["keypoints"], raw["scores"] = np.asarray(data["keypoints"]), np.asarray(data["scores"])
            keypoints, scores = raw["keypoints"].astype(np.float32), raw["scores"].astype(np.float32)
    except (ValueError, TypeError) as exc:
        raise PoseFileError(path, f"keypoints/scores are not regular arrays ({exc})") from None
    if keypoints.size == 0:
        raise PoseFileError(path, "pose file has no frames")
    if keypoints.ndim != 4 or keypoints.shape[2:] != (NUM_KEYPOINTS, 2) \
            or scores.shape != keypoints.shape[:3]:
        raise PoseFileError(path, f"expected keypoints (N,1,133,2) and scores (N,1,133), "
                                  f"found {keypoints.shape} and {scores.shape}")
    keypoints, scores = keypoints[:, 0], scores[:, 0]
    num_frames = len(keypoints)
    if not clip_bounds:
        return keypoints, scores, 0, num_frames
    start = _frame_bound(path, data, "start", 0)
    end = _frame_bound(path, data, "end", num_frames)
    if not 0 <= start < end <= num_frames:
        raise PoseFileError(path, f"no usable frames: start={start}, end={end}, "
                                  f"file has {num_frames} frames")
    return keypoints, scores, start, end


def sample_frame_indices(start, end, max_length, rng=random):
    """Original frame indices to use: all of start…end-1, or max_length sorted random ones."""
    duration = end - start
    if duration > max_length:
        offsets = sorted(rng.sample(range(duration), k=max_length))
    else:
        offsets = range(duration)
    return np.asarray(offsets, dtype=np.int64) + start


def _crop_scale(motion):
    """Normalise the body over the whole clip to [-1, 1]; returns (result, scale)."""
    valid = motion[..., 2] > SCORE_THRESHOLD
    points = motion[valid][:, :2]
    if len(points) < 4:
        return np.zeros_like(motion), 0.0
    xmin, ymin = points.min(0)
    xmax, ymax = points.max(0)
    scale = max(xmax - xmin, ymax - ymin)
    if scale == 0:
        return np.zeros_like(motion), 0.0
    origin = np.array([(xmin + xmax - scale) / 2, (ymin + ymax - scale) / 2], dtype=motion.dtype)
    result = motion.copy()
    result[..., :2] = np.clip(((motion[..., :2] - origin) / scale - 0.5) * 2, -1, 1)
    result[~valid] = 0
    return result, scale


def normalise_parts(keypoints, scores):
    """(T,133,2) pixels + (T,133) scores → {part: float32 array (T, V, 3)} as upstream computes it."""
    finite = np.isfinite(keypoints).all(-1) & np.isfinite(scores)
    keypoints = np.where(finite[..., None], keypoints, 0).astype(np.float32)
    scores = np.where(finite, scores, 0).astype(np.float32)
    body = np.concatenate([keypoints[:, PART_KEYPOINTS["body"]],
                           scores[:, PART_KEYPOINTS["body"], None]], axis=-1)
    parts = {}
    parts["body"], scale = _crop_scale(body)
    for part in PARTS[1:]:
        xy = keypoints[:, PART_KEYPOINTS[part]]
        xy = xy - xy[:, PART_ANCHOR[part]][:, None]
        result = np.concatenate([xy, scores[:, PART_KEYPOINTS[part], None]], axis=-1)
        if scale == 0:
            parts[part] = np.zeros_like(result)
            continue
        result[..., :2] /= scale
        result = np.clip(result, -1, 1)
        result[result[..., 2] <= SCORE_THRESHOLD] = 0
        parts[part] = result
    return parts


class PoseSample(NamedTuple):
    parts: dict            # {part: (T, V, 3) float32}
    frames: np.ndarray     # (T,) original frame indices
    clip_end: int          # frames of the clip are < clip_end: descriptions beyond it are out of range
    warnings: list         # suspicious-but-usable findings, for the run's counts


def load_pose_sample(path, max_length, rng=random, clip_bounds=True, raw=None):
    """Read, sample and normalise one pose file → PoseSample (`clip_bounds`: see read_pose_file).

    A clip whose sampled frames hold no usable keypoint (all NaN, or no confidence above the
    threshold) would train as zeros: it is refused. Some NaN/inf values are a counted warning.
    """
    stored = {} if raw is not None else None
    keypoints, scores, start, end = read_pose_file(path, clip_bounds, stored)
    frames = sample_frame_indices(start, end, max_length, rng)
    keypoints, scores = keypoints[frames], scores[frames]
    parts = normalise_parts(keypoints, scores)
    if not any(part.any() for part in parts.values()):
        raise PoseFileError(path, f"no usable keypoint in the sampled frames {start}…{end - 1} (all NaN/inf, or "
                                  f"no body keypoint with confidence above {SCORE_THRESHOLD}); it would "
                                  "train as zeros")
    warnings = []
    bad = int((~np.isfinite(keypoints).all(-1) | ~np.isfinite(scores)).sum())
    if bad:
        warnings.append(f"{bad} of {scores.size} sampled keypoints are NaN/inf (treated as undetected)")
    if raw is not None:  # the sampled frames in the file's dtypes: (T, 1, 133, 2), (T, 1, 133)
        raw["keypoints"], raw["scores"] = stored["keypoints"][frames], stored["scores"][frames]
    return PoseSample(parts, frames, end, warnings)

"""The RGB side of `--rgb_support`: which frames show each hand, the crop boxes, the crops, the support dict.

Written from the RGB spec UNI_SIGN_RGB.md (§2 frame choice, §4 boxes, §5 crops, §6 the dict, §7 collate) so that
the same pose file, video and random state give upstream Uni-Sign's dict, value for value. Inputs are the
sampled frames' keypoints (T, 1, 133, 2) and scores (T, 1, 133) in the pose file's *stored* dtypes (upstream
computes in them), and `frames` (T,): the original frame numbers, `start` included.
"""
from typing import NamedTuple

import numpy as np
import torch

SCORE_THRESHOLD = 0.3
HANDS = {  # hand → (its 21 keypoints, its 5 fingertips)
    "left": (slice(91, 112), [95, 99, 103, 107, 111]),
    "right": (slice(112, 133), [116, 120, 124, 128, 132]),
}
SAMPLE_SHARE = 0.1  # about 10 % of a hand's confident frames (at least 1) are cropped
BOX_MARGIN = 1.2
IMAGE_SIZE = 112
MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32).view(1, 3, 1, 1)
KEYS = ("sampled_indices", "hands", "skeletons_norm")
# Normalised keypoints are x/W, y/H: a detector may put a hand a little outside the frame, never a frame away.
NORMALISED_RANGE = (-1.0, 2.0)


class HandKeypointError(ValueError):
    """Hand keypoints that cannot be placed on the video's frames; names the file, the reason and the fix."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def choose_hand_frames(scores, hand, rng=np.random):
    """Sorted int64 positions (into the sampled sequence) of the frames to crop for `hand`, or None if absent.

    scores: (T, 1, 133). A position is confident when the mean of the hand's 21 scores is > 0.3; among the n
    confident ones, ceil(0.1 n) are drawn without replacement, weighted towards the lowest fingertip
    confidence. No confident position: None, and `rng` is not touched.
    """
    points, tips = HANDS[hand]
    confident = np.where(scores[:, 0, points].mean(-1) > SCORE_THRESHOLD)[0]
    if len(confident) == 0:
        return None
    tip_scores = scores[confident][:, 0, tips].min(-1)
    weights = np.max(tip_scores) - tip_scores + 1e-5
    probabilities = weights / np.sum(weights)
    size = int(np.ceil(SAMPLE_SHARE * len(confident)))
    # exactly upstream's call (a Python list, size, replace=False, p): the draw depends on the algorithm
    chosen = rng.choice(confident.tolist(), size=size, replace=False, p=probabilities)
    return np.sort(chosen)


def _centres_and_extent(hand_points, height, width):
    """(k, 21, 2) normalised points → per-frame centres in pixels (cx, cy) and the hand's largest extent."""
    min_x, max_x = np.min(hand_points[..., 0], axis=1), np.max(hand_points[..., 0], axis=1)
    min_y, max_y = np.min(hand_points[..., 1], axis=1), np.max(hand_points[..., 1], axis=1)
    cx, cy = width * ((max_x + min_x) / 2), height * ((max_y + min_y) / 2)
    extent = max(np.max(width * (max_x - min_x)), np.max(height * (max_y - min_y)))
    return cx, cy, extent


def crop_boxes(left_points, right_points, height, width):
    """One square size for the clip and per-frame int16 boxes (x0, y0, x1, y1) for each hand.

    An absent hand (None) counts as one all-zero frame. Size = max hand extent × 1.2, truncated to an even
    integer; corners truncated toward zero (they may lie outside the frame). → (left (k,4), right (k,4), size)
    """
    zeros = np.zeros([1, 21, 2])
    left = _centres_and_extent(zeros if left_points is None else left_points, height, width)
    right = _centres_and_extent(zeros if right_points is None else right_points, height, width)
    size = max(int(max(left[2], right[2]) * BOX_MARGIN / 2) * 2, 0)

    def boxes(cx, cy):
        return np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]).astype(np.int16).T

    return boxes(*left[:2]), boxes(*right[:2]), size


def crop_image(frame, box, size):
    """uint8 (size, size, 3): frame[y0:y1, x0:x1] with numpy's slice rules (a negative corner counts from the
    far edge, as upstream's), zero-padded at the bottom and right."""
    x0, y0, x1, y1 = (int(v) for v in box)
    part = frame[y0:y1, x0:x1]
    out = np.zeros((max(size, part.shape[0]), max(size, part.shape[1]), 3), np.uint8)
    out[:part.shape[0], :part.shape[1]] = part
    return out


def resize_crops(crops):
    """uint8 crops → float32 (n, 3, 112, 112): Pillow's default (bicubic) resize, /255, ImageNet normalised.

    Upstream's ToTensor + Normalize ops in their order (x / 255, - mean, / std), in place on one contiguous
    (n, 3, 112, 112) tensor: the same correctly rounded float32 values, in one allocation."""
    from PIL import Image

    # Image.fromarray of an (h, w, 3) uint8 array is already RGB: upstream's .convert("RGB") is a plain copy
    resized = np.stack([np.asarray(Image.fromarray(c).resize((IMAGE_SIZE, IMAGE_SIZE))) for c in crops])
    images = torch.from_numpy(np.ascontiguousarray(resized.transpose(0, 3, 1, 2))).to(torch.float32)
    return images.div_(255).sub_(MEAN).div_(STD)


def fallback(hand):
    """The dict entries of a hand that has no crop (absent, or no box for the clip)."""
    return {f"{hand}_sampled_indices": torch.tensor([-1]),
            f"{hand}_hands": torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),
            f"{hand}_skeletons_norm": torch.zeros(1, 21, 2)}


def fallback_dict():
    return {**fallback("left"), **fallback("right")}


class HandChoice(NamedTuple):
    positions: dict   # hand → sorted int64 positions, or None (absent)
    points: dict      # hand → (k, 21, 2) keypoints of those positions (stored dtype), or None


def choose_hands(keypoints, scores, rng=np.random):
    """Left first, then right (the order the random stream is consumed in)."""
    positions, points = {}, {}
    for hand, (slc, _) in HANDS.items():
        positions[hand] = choose_hand_frames(scores, hand, rng)
        points[hand] = None if positions[hand] is None else keypoints[positions[hand], 0, slc]
    return HandChoice(positions, points)


def check_normalised(points, pose_path):
    """The chosen hand keypoints must be finite normalised coordinates, or the boxes mean nothing."""
    for hand, p in points.items():
        if p is None:
            continue
        if not np.isfinite(p).all():
            raise HandKeypointError(pose_path, f"the {hand} hand's keypoints hold NaN/inf in a frame chosen for "
                                               "cropping; re-extract the poses")
        low, high = NORMALISED_RANGE
        if p.min() < low or p.max() > high:
            raise HandKeypointError(pose_path, f"the {hand} hand's keypoints reach {float(p.max()):.1f}: not "
                                    "normalised coordinates (x/W, y/H of the frame, as upstream's "
                                    "demo/pose_extraction.py writes them), so they do not fit the video's frames; "
                                    "divide the keypoints by the frame size (W, H) or re-extract")


def support_dict(choice, frames, decode):
    """The sample's RGB dict (upstream's keys, order, shapes and dtypes; spec §6).

    choice: HandChoice; frames: (T,) original frame numbers; decode(frame numbers) → K frames that slice like uint8
    (H, W, 3) arrays (video.read_frames' Frames convert only the parts that are read).
    """
    present = [p for p in choice.positions.values() if p is not None]
    if not present:
        return fallback_dict()  # fallback A: the video is not opened
    positions = np.unique(np.concatenate(present))
    images = decode(np.asarray(frames)[positions])
    height, width = images[0].shape[:2]
    left_boxes, right_boxes, size = crop_boxes(choice.points["left"], choice.points["right"], height, width)
    if size == 0:
        return fallback_dict()  # fallback B: no hand has an extent
    boxes = {"left": left_boxes, "right": right_boxes}
    row = {int(p): i for i, p in enumerate(positions)}
    result = {}
    for hand in HANDS:
        chosen = choice.positions[hand]
        if chosen is None:
            result.update(fallback(hand))
            continue
        crops = [crop_image(images[row[int(p)]], box, size) for p, box in zip(chosen, boxes[hand])]
        norm = (choice.points[hand] * (width, height) - boxes[hand][:, None, [0, 1]]) / size
        result[f"{hand}_sampled_indices"] = torch.tensor(chosen)
        result[f"{hand}_hands"] = resize_crops(crops)
        result[f"{hand}_skeletons_norm"] = torch.tensor(norm.clip(0, 1))
    return result


def collate_support(dicts):
    """Batch the per-sample dicts as upstream: per hand, concatenated indices, skeletons and images, and a
    Python list of per-sample lengths."""
    out = {}
    for hand in HANDS:
        indices = [d[f"{hand}_sampled_indices"] for d in dicts]
        out[f"{hand}_sampled_indices"] = torch.cat(indices, 0)
        out[f"{hand}_skeletons_norm"] = torch.cat([d[f"{hand}_skeletons_norm"] for d in dicts], 0)
        out[f"{hand}_hands"] = torch.cat([d[f"{hand}_hands"] for d in dicts], 0)
        out[f"{hand}_rgb_len"] = [len(i) for i in indices]
    return out

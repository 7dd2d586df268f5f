"""One sample's `--rgb_support` data: where its video is, and its support dict (or a named error to skip it).

The dataset passes config's folders in (this package never imports the top-level modules).
"""
import numpy as np

from uni_sign_ext.layout import split_folder
from uni_sign_ext.hand_crops import HandKeypointError, check_normalised, choose_hands, support_dict
from uni_sign_ext.video import VideoFileError, read_frames, require_file

# Errors that make one sample unusable: skipped and counted like a bad pose file (docs/errors.md).
RGB_ERRORS = (VideoFileError, HandKeypointError)


def rgb_folder(rgb_dirs, args, label_path):
    """The folder videos are read from, or None without --rgb_support. The split subfolder follows the
    label file (labels.<split>) as the pose folder does: How2Sign's dev is its test split."""
    if not getattr(args, "rgb_support", False):
        return None
    return split_folder(rgb_dirs[args.dataset], args.dataset, label_path)


def load_support(sample, raw, pose_path, video_path, rng=np.random):
    """PoseSample and its sampled frames' stored arrays (load_pose_sample's `raw`) → upstream's support dict.

    `rng` draws the hand frames (left, then right; an absent hand draws nothing). A missing video is an
    error even when no hand needs a crop; the video is decoded only when some hand does, up to the last
    frame needed.
    """
    require_file(video_path)
    keypoints, scores = raw["keypoints"], raw["scores"]
    choice = choose_hands(keypoints, scores, rng)
    check_normalised(choice.points, pose_path)
    return support_dict(choice, sample.frames, lambda frames: read_frames(video_path, frames))

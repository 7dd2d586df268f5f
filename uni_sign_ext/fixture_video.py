"""The mini-world's videos, for `--rgb_support`: one short H.264 mp4 per CSL_Daily and CSL-News sample (`--videos`).

Upstream's pose files hold *normalised* keypoints (x/W, y/H; float64, as its demo/pose_extraction.py writes
them), and the RGB path multiplies them by the decoded frame's size. The world's pose writer works in pixels
of a 1280×720 frame, so with videos the CSL_Daily pose files are rewritten normalised (float64; scores as
they were), and each video (160×120, every frame of the recording, `start` offset included) shows both hands
where those keypoints say: 21 joint squares per hand, the signer's left hand reddish, the right hand bluish,
on a background whose level changes every frame (so a frame decoded one off shows). To exercise upstream's
rules, in each split (sample k): k % 6 == 2 stands at the frame's left edge (boxes with negative corners, read
from the far edge as upstream's numpy slicing does), k % 6 == 3 has hand scores near the 0.3 threshold in every
other frame, k % 6 == 5 loses its right hand (scores below 0.3 in every frame) and k % 12 == 11 both hands
(its video is then never opened). ImageNet weights cannot be downloaded here, so the world also holds a
*random-init* EfficientNet-B0 weights file (BACKBONE_WEIGHTS) for `--rgb_backbone_weights`: named, never implied.
"""
import json
import pickle
from pathlib import Path

import numpy as np

from uni_sign_ext.fixture import read_labels
from uni_sign_ext.fixture_news import LABEL_FILE as NEWS_LABEL_FILE

SOURCE_FRAME = np.array([1280, 720], np.float64)  # the pixel frame the world's pose writer draws in
WIDTH, HEIGHT = 160, 120
FPS = 25
HAND_COLOURS = (((91, 112), (220, 60, 40)), ((112, 133), (40, 80, 230)))  # (keypoints, RGB)
ABSENT_SCORE = 0.1
LEFT_EDGE_SHIFT = 0.42  # the right wrist rests near x = 0.44
BACKBONE_WEIGHTS = Path("pretrained_weight") / "efficientnet_b0_random_init.pth"  # under the world's root


def write_video(path, keypoints):
    """H.264 mp4 of len(keypoints) frames; keypoints (N, 1, 133, 2) normalised."""
    import av

    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    gradient = (xs * 0.4 + ys * 0.3).astype(np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t, kp in enumerate(keypoints):
            level = 30 + (7 * t) % 90
            image = np.repeat((gradient + level).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
            for (first, end), colour in HAND_COLOURS:
                points = np.rint(kp[0, first:end] * (WIDTH, HEIGHT)).astype(int)
                for x, y in points:
                    image[max(y - 1, 0):max(y + 2, 0), max(x - 1, 0):max(x + 2, 0)] = colour
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build_videos(root):
    """Normalise the CSL_Daily and CSL-News pose files and write their videos at rgb_dirs' place; returns the
    count. CSL_Daily's cases vary with the sample's number in its split, CSL-News's with its place in the list."""
    root = Path(root)
    clips = []
    for split in ("train", "dev", "test"):
        labels = read_labels(root / "data" / "CSL_Daily" / f"labels.{split}").values()
        clips += [(i, root / "dataset" / "CSL_Daily" / "pose_format" / (e["video_path"][: -len(".mp4")] + ".pkl"),
                   root / "dataset" / "CSL_Daily" / "sentence-crop" / e["video_path"]) for i, e in enumerate(labels)]
    news = root / "data" / "CSL_News" / NEWS_LABEL_FILE
    if news.is_file():  # pre_training.py --rgb_support (stage 2)
        clips += [(i, root / "dataset" / "CSL_News" / "pose_format" / item["pose"],
                   root / "dataset" / "CSL_News" / "rgb_format" / item["video"])
                  for i, item in enumerate(json.loads(news.read_text(encoding="utf-8")))]
    for i, pose_path, video_path in clips:
        film(i, pose_path, video_path)
    write_random_backbone_weights(root / BACKBONE_WEIGHTS)
    return len(clips)


def film(i, pose_path, video_path):
    """Rewrite one pose file normalised (with case i's twist) and write its video."""
    with open(pose_path, "rb") as f:
        pose = pickle.load(f)
    keypoints = np.stack(pose["keypoints"]).astype(np.float64) / SOURCE_FRAME
    scores = np.stack(pose["scores"])
    if i % 6 == 2:  # the signer at the frame's left edge: the right hand's boxes start at negative x
        keypoints[..., 0] -= LEFT_EDGE_SHIFT
    if i % 6 == 3:  # every other frame's hand scores near the 0.3 threshold (mean > 0.3 or not)
        scores[::2, :, 91:133] = np.random.default_rng(i).uniform(0.27, 0.33, scores[::2, :, 91:133].shape)
    if i % 6 == 5:
        scores[:, :, 112:133] = ABSENT_SCORE
    if i % 12 == 11:
        scores[:, :, 91:133] = ABSENT_SCORE
    pose["keypoints"], pose["scores"] = list(keypoints), list(scores)
    with open(pose_path, "wb") as f:
        pickle.dump(pose, f)
    write_video(video_path, keypoints)


def write_random_backbone_weights(path):
    """A seeded random-init EfficientNet-B0 `features` state dict, in torchvision's keys."""
    import torch

    from uni_sign_ext.rgb_backbone import efficientnet_b0_features

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(efficientnet_b0_features().state_dict(), path)

"""Data and weight locations, as in upstream Uni-Sign.

Paths are relative to the repo root by default. Set UNISIGN_ROOT to point every path at another
root laid out the same way (e.g. the offline mini-world: `UNISIGN_ROOT=mini_world python fine_tuning.py ...`).
"""
import os

ROOT = os.environ.get("UNISIGN_ROOT", ".")


def _at_root(relative):
    return os.path.join(ROOT, relative)


mt5_path = _at_root("pretrained_weight/mt5-base")

train_label_paths = {
    "CSL_News": _at_root("data/CSL_News/CSL_News_Labels.json"),
    "CSL_Daily": _at_root("data/CSL_Daily/labels.train"),
    "WLASL": _at_root("data/WLASL/labels-2000.train"),
    "How2Sign": _at_root("data/How2Sign/labels.train"),
    "OpenASL": _at_root("data/OpenASL/labels.train"),
}
dev_label_paths = {
    "CSL_News": _at_root("data/CSL_News/CSL_News_Labels.json"),
    "CSL_Daily": _at_root("data/CSL_Daily/labels.dev"),
    "WLASL": _at_root("data/WLASL/labels-2000.dev"),
    "How2Sign": _at_root("data/How2Sign/labels.test"),  # How2Sign has no dev split
    "OpenASL": _at_root("data/OpenASL/labels.dev"),
}
test_label_paths = {
    "CSL_News": _at_root("data/CSL_News/CSL_News_Labels.json"),
    "CSL_Daily": _at_root("data/CSL_Daily/labels.test"),
    "WLASL": _at_root("data/WLASL/labels-2000.test"),
    "How2Sign": _at_root("data/How2Sign/labels.test"),
    "OpenASL": _at_root("data/OpenASL/labels.test"),
}

rgb_dirs = {
    "CSL_News": _at_root("dataset/CSL_News/rgb_format"),
    "CSL_Daily": _at_root("dataset/CSL_Daily/sentence-crop"),
    "WLASL": _at_root("dataset/WLASL/rgb_format"),
    "How2Sign": _at_root("dataset/How2Sign/rgb_format"),
    "OpenASL": _at_root("dataset/OpenASL/rgb_format"),
}
pose_dirs = {
    "CSL_News": _at_root("dataset/CSL_News/pose_format"),
    "CSL_Daily": _at_root("dataset/CSL_Daily/pose_format"),
    "WLASL": _at_root("dataset/WLASL/pose_format"),
    "How2Sign": _at_root("dataset/How2Sign/pose_format"),
    "OpenASL": _at_root("dataset/OpenASL/pose_format"),
}
# WLASL, How2Sign and OpenASL keep pose files and videos in a per-split subfolder (uni_sign_ext/layout.py).

# New in this fork: action descriptions and their cached text features.
description_root = _at_root("description")
feature_cache_dir = _at_root("feature_cache")

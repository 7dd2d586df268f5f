"""Where every upstream dataset's labels and pose files are looked for, per split."""
import os

import pytest

import config
from conftest import parse_args
from datasets import pose_folder

EXPECTED = {  # (label file, pose folder) relative to the root, per split
    ("CSL_Daily", "train"): ("data/CSL_Daily/labels.train", "dataset/CSL_Daily/pose_format"),
    ("CSL_Daily", "dev"): ("data/CSL_Daily/labels.dev", "dataset/CSL_Daily/pose_format"),
    ("CSL_Daily", "test"): ("data/CSL_Daily/labels.test", "dataset/CSL_Daily/pose_format"),
    ("CSL_News", "train"): ("data/CSL_News/CSL_News_Labels.json", "dataset/CSL_News/pose_format"),
    ("CSL_News", "dev"): ("data/CSL_News/CSL_News_Labels.json", "dataset/CSL_News/pose_format"),
    ("CSL_News", "test"): ("data/CSL_News/CSL_News_Labels.json", "dataset/CSL_News/pose_format"),
    ("WLASL", "train"): ("data/WLASL/labels-2000.train", "dataset/WLASL/pose_format/train"),
    ("WLASL", "dev"): ("data/WLASL/labels-2000.dev", "dataset/WLASL/pose_format/dev"),
    ("WLASL", "test"): ("data/WLASL/labels-2000.test", "dataset/WLASL/pose_format/test"),
    ("How2Sign", "train"): ("data/How2Sign/labels.train", "dataset/How2Sign/pose_format/train"),
    ("How2Sign", "dev"): ("data/How2Sign/labels.test", "dataset/How2Sign/pose_format/test"),  # no dev split
    ("How2Sign", "test"): ("data/How2Sign/labels.test", "dataset/How2Sign/pose_format/test"),
    ("OpenASL", "train"): ("data/OpenASL/labels.train", "dataset/OpenASL/pose_format/train"),
    ("OpenASL", "dev"): ("data/OpenASL/labels.dev", "dataset/OpenASL/pose_format/dev"),
    ("OpenASL", "test"): ("data/OpenASL/labels.test", "dataset/OpenASL/pose_format/test"),
}


@pytest.mark.parametrize("dataset,split", list(EXPECTED))
def test_label_and_pose_paths(dataset, split):
    labels, poses = EXPECTED[dataset, split]
    label_path = getattr(config, f"{split}_label_paths")[dataset]
    assert label_path == os.path.join(config.ROOT, labels)
    assert pose_folder(parse_args("--dataset", dataset), label_path) == os.path.join(config.ROOT, poses)

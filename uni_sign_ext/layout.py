"""Where a dataset's files sit: upstream's layout as functions of config.py's entries, which the caller passes
in, so the machinery in uni_sign_ext (the checklist, the RGB data path) never imports the top-level config."""
import os
from dataclasses import dataclass

SPLIT_SUBFOLDER_DATASETS = ("WLASL", "How2Sign", "OpenASL")  # their pose files and videos sit in <folder>/<split>/


def split_folder(folder, dataset, label_path):
    """`folder`, or `folder/<split>` for datasets split by folder; the split is the label file's extension
    (labels.<split>), so How2Sign's dev, which reads labels.test, reads the test folder too."""
    if dataset in SPLIT_SUBFOLDER_DATASETS:
        return os.path.join(folder, os.path.splitext(str(label_path))[1].lstrip("."))
    return folder


def pose_file_name(video_path):
    return os.path.splitext(video_path)[0] + ".pkl"


@dataclass(frozen=True)
class DataLayout:
    """One dataset's label file per split and its pose and video folders (config.py's entries for it)."""

    dataset: str
    label_paths: dict  # split -> label file
    pose_dir: str
    rgb_dir: str

    @classmethod
    def from_config(cls, config, dataset):
        """`config`: upstream's config module (or anything with its dictionaries)."""
        return cls(dataset, {"train": config.train_label_paths[dataset], "dev": config.dev_label_paths[dataset],
                             "test": config.test_label_paths[dataset]},
                   config.pose_dirs[dataset], config.rgb_dirs[dataset])

    def pose_folder(self, split):
        return split_folder(self.pose_dir, self.dataset, self.label_paths[split])

    def video_folder(self, split):
        return split_folder(self.rgb_dir, self.dataset, self.label_paths[split])

"""Sign-to-text dataset and collate, in upstream Uni-Sign's item and batch formats.

With --rgb_support each item's 5th element is upstream's hand-crop dict (uni_sign_ext/hand_crops.py) and the
batch carries its collated form. With --use_descriptions each item also carries its aligned descriptions, and
the batch carries the batch's unique description texts plus, per frame, which text(s) and weight apply.
"""
import logging
import os
import random
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

import config
from uni_sign_ext.hand_crops import collate_support
from uni_sign_ext.labels import LabelFileError, csl_news_bounds, csl_news_item_problem, load_labels, read_csl_news_list
from uni_sign_ext.pose import PARTS, PoseFileError, load_pose_sample
from uni_sign_ext.layout import SPLIT_SUBFOLDER_DATASETS, pose_file_name, split_folder
from uni_sign_ext.rgb_support import RGB_ERRORS, load_support, rgb_folder

logger = logging.getLogger(__name__)
MISSING_NAMES_SHOWN = 5
NEWS_ATTEMPTS = 10  # upstream's S2T_Dataset_news: the sample, then up to 9 random replacements


@dataclass
class SkippedSample:
    """A sample whose pose file could not be used; counted and reported, never silently dropped."""
    name: str
    path: str
    reason: str


@dataclass
class SampleWarning:
    """Something suspicious but usable about a sample (NaN keypoints, descriptions beyond the clip…)."""
    name: str
    reason: str


@dataclass
class Flagged:
    """An item with problems to count: samples it stands in for (training replaces skipped samples by
    the next good one), and warnings about the item itself."""
    item: tuple
    skipped: list
    warnings: list


def pose_folder(args, label_path):
    """Pose files sit in pose_format/, or pose_format/<split>/ for datasets that split them by folder."""
    return split_folder(config.pose_dirs[args.dataset], args.dataset, label_path)


def check_pose_folder(folder, dataset):
    """A missing pose folder is a layout mistake, not a split of missing files: say where poses belong."""
    if not os.path.isdir(folder):
        where = "pose_format/<split>/ (train, dev, test)" if dataset in SPLIT_SUBFOLDER_DATASETS else "pose_format/"
        raise SystemExit(f"{folder}: pose folder not found; {dataset} keeps its pose files in {where} under "
                         "dataset/<Dataset>/ (config.pose_dirs, UNISIGN_ROOT).")


class S2T_Dataset(Dataset):
    clip_bounds = True  # a pose file's start/end select the clip (upstream's S2T_Dataset)

    def __init__(self, path, args, phase):
        self.args = args
        self.phase = phase
        self.max_length = args.max_length
        self.pose_dir = pose_folder(args, path)
        label_set = load_labels(path, args.dataset, phase)
        labels = label_set.entries
        check_pose_folder(self.pose_dir, args.dataset)
        if args.task == "CSLR" and not any(e["gloss"].strip() for e in labels.values()):
            raise SystemExit(f"{path}: no entry has glosses, but --task CSLR learns glosses: use gloss-annotated "
                             "labels (CSL_Daily's), or --task SLT.")
        available = set(os.listdir(self.pose_dir))
        self.missing_pose = [n for n, e in labels.items() if pose_file_name(e["video_path"]) not in available]
        if self.missing_pose:
            logger.warning("%s: %d of %d labelled samples have no pose file in %s and are skipped "
                           "(e.g. %s)", path, len(self.missing_pose), len(labels), self.pose_dir,
                           ", ".join(self.missing_pose[:MISSING_NAMES_SHOWN]))
        if label_set.skipped:
            logger.warning("%s: %d unusable label entries skipped (e.g. %s)", path, len(label_set.skipped),
                           "; ".join(f"{n}: {r}" for n, r in list(label_set.skipped.items())[:MISSING_NAMES_SHOWN]))
        # Every labelled sample is either here, or in `rejected` (name → reason), or skipped later: none is lost.
        self.rejected = dict(label_set.skipped, **{n: "no pose file" for n in self.missing_pose})
        self.label_warnings = label_set.warnings
        missing = set(self.missing_pose)
        self.labels = {n: e for n, e in labels.items() if n not in missing}
        self.names = list(self.labels)
        self.rgb_dir = rgb_folder(config.rgb_dirs, args, path)
        self._open_descriptions()

    def _open_descriptions(self):
        self.description_loader = None
        if self.args.use_descriptions:
            from uni_sign_ext.descriptions import open_description_loader

            self.description_loader = open_description_loader(self.args.desc_dir, self.args.dataset, self.phase)
        self.setup_warnings = self._setup_warnings()

    def _setup_warnings(self):
        """Problems found once at start: description layout, description files of no labelled sample."""
        if self.description_loader is None:
            return []
        from uni_sign_ext.descriptions import sample_key

        problems = list(self.description_loader.layout_problems)
        labelled = {sample_key(n) for n in self.names} | {sample_key(n) for n in self.rejected}
        unknown = sorted(self.description_loader.phase_sample_ids() - labelled)
        if unknown:
            problems.append(f"{len(unknown)} description files in the {self.phase} folder match no {self.phase} "
                            f"label (e.g. {', '.join(unknown[:MISSING_NAMES_SHOWN])}): check their names")
            logger.warning("%s", problems[-1])
        return problems

    def _frame_rng(self, index):
        """Training samples long videos' frames from the global stream; evaluation from a stream seeded
        per sample, so the frames do not depend on which rank, batch or worker loads the sample."""
        return random if self.phase == "train" else random.Random(f"{self.args.seed}/{self.phase}/{index}")

    def _hand_rng(self, index):
        """Hand frames (--rgb_support) are drawn from numpy's legacy global stream in training, as upstream;
        in evaluation from a RandomState seeded per sample, like the frames (_frame_rng)."""
        if self.phase == "train":
            return np.random
        return np.random.RandomState(zlib.crc32(f"{self.args.seed}/{self.phase}/{index}/hands".encode()))

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        item, warnings = self._load(index)
        skipped = []
        if self.phase == "train" and isinstance(item, SkippedSample):
            # In training a bad file is replaced by another sample, so every rank keeps its batch size
            # (ranks must step together); the skip still travels with the batch to be counted.
            skipped = [item]
            for other in self._replacements(index):
                item, warnings = self._load(other)
                if not isinstance(item, SkippedSample):
                    break
                skipped.append(item)
            else:
                raise RuntimeError(self._no_replacement_left(skipped))
        if isinstance(item, SkippedSample) or not (skipped or warnings):
            return item
        return Flagged(item, skipped, warnings)

    def _replacements(self, index):
        """Indices to try, in order, when a training sample's pose file is unusable: the next ones."""
        return ((index + step) % len(self.names) for step in range(1, len(self.names)))

    def _no_replacement_left(self, skipped):
        return f"no usable pose file among the {len(self.names)} samples in {self.pose_dir}"

    def _load(self, index):
        """→ (item or SkippedSample, [SampleWarning])."""
        name = self.names[index]
        entry = self.labels[name]
        path = os.path.join(self.pose_dir, pose_file_name(entry["video_path"]))
        return self._load_item(index, name, path, entry["text"], entry["gloss"], entry["video_path"])

    def _load_item(self, index, name, path, text, gloss, video):
        """One sample's pose file (and with --rgb_support its video) → (upstream's item or SkippedSample,
        [SampleWarning])."""
        raw = {} if self.rgb_dir is not None else None
        try:
            sample = load_pose_sample(path, self.max_length, self._frame_rng(index), self.clip_bounds, raw)
            support = {} if raw is None else \
                load_support(sample, raw, path, os.path.join(self.rgb_dir, video), self._hand_rng(index))
        except (PoseFileError,) + RGB_ERRORS as exc:
            return SkippedSample(name, exc.path, exc.reason), []
        reasons = sample.warnings + ([self.label_warnings[name]] if name in self.label_warnings else [])
        pose = {part: torch.from_numpy(sample.parts[part]) for part in PARTS}
        item = (name, pose, text, gloss, support)
        if self.args.use_descriptions:
            from uni_sign_ext.alignment import aligned_sample_descriptions

            descriptions = aligned_sample_descriptions(self.description_loader, name, sample.frames, sample.clip_end)
            item += (descriptions,)
            reasons += descriptions[2]
        return item, [SampleWarning(name, reason) for reason in reasons]

    def collate_fn(self, batch):
        return collate(batch, self.args.use_descriptions, self.rgb_dir is not None)


class S2T_Dataset_news(S2T_Dataset):
    """CSL-News, for pre-training: one JSON list of {"video", "pose", "text"}, split by position as upstream
    (first 99 % train, the last 1 % dev and test; labels.csl_news_bounds). Items are upstream's: the name is
    the entry's `video`, the pose file `pose_dir/<pose>`, the gloss ''.

    As upstream, a training sample whose pose file (or entry) is unusable is replaced by a random sample, up
    to NEWS_ATTEMPTS tries in all; unlike upstream, every replaced sample is counted and reported. In
    evaluation it is skipped and counted (never scored twice under another sample's name). Upstream's
    news loader reads every frame of a pose file, ignoring its `start`/`end`: so does this one.
    """
    clip_bounds = False

    def __init__(self, path, args, phase):
        self.args = args
        self.phase = phase
        self.max_length = args.max_length
        self.label_path = str(path)
        self.pose_dir = pose_folder(args, path)
        self.rgb_dir = rgb_folder(config.rgb_dirs, args, path)
        if args.task == "CSLR":
            raise SystemExit(f"{path}: CSL-News has sentences, no glosses, but --task CSLR learns glosses: use "
                             "gloss-annotated labels (CSL_Daily's), or --task SLT.")
        items = read_csl_news_list(path)
        check_pose_folder(self.pose_dir, args.dataset)
        self.start_idx, self.end_idx = csl_news_bounds(len(items), phase)
        self.items = items[self.start_idx:self.end_idx]
        if not self.items:
            raise LabelFileError(f"{path}: no {phase} sample: its {len(items)} entries leave the {phase} part "
                                 "(first 99 % train, last 1 % dev/test) empty; fix the file or UNISIGN_ROOT")
        self.names = [item["video"] if isinstance(item, dict) and isinstance(item.get("video"), str)
                      else f"item {self.start_idx + i}" for i, item in enumerate(self.items)]
        self.rejected = {}  # nothing is rejected at start: a bad item is met, counted and replaced while loading
        self.label_warnings = {name: "empty target sentence" for name, item in zip(self.names, self.items)
                               if isinstance(item, dict) and isinstance(item.get("text"), str)
                               and not item["text"].strip()}
        self._open_descriptions()

    def _replacements(self, index):
        return (random.randint(0, len(self) - 1) for _ in range(NEWS_ATTEMPTS - 1))

    def _no_replacement_left(self, skipped):
        last = skipped[-1]
        return (f"{len(skipped)} CSL-News samples in a row had unusable pose files (last: {last.path}: "
                f"{last.reason}); check {self.pose_dir}")

    def _load(self, index):
        item, name = self.items[index], self.names[index]
        problem = csl_news_item_problem(item)
        if problem:
            return SkippedSample(name, f"{self.label_path} item {self.start_idx + index}", problem), []
        return self._load_item(index, name, os.path.join(self.pose_dir, item["pose"]), item["text"], "",
                               item["video"])


def make_dataset(path, args, phase):
    """The dataset class upstream uses for `args.dataset`: CSL-News has its own."""
    cls = S2T_Dataset_news if args.dataset == "CSL_News" else S2T_Dataset
    return cls(path, args, phase)


def _pad_repeat_last(x, length):
    """Pad (T, V, C) to `length` frames by repeating the last frame, as upstream does."""
    return torch.cat([x, x[-1:].expand(length - len(x), *x.shape[1:])]) if len(x) < length else x


def collate(batch, use_descriptions=False, rgb_support=False):
    skipped, warnings, items = [], [], []
    for b in batch:
        if isinstance(b, SkippedSample):
            skipped.append(b)
        elif isinstance(b, Flagged):
            skipped.extend(b.skipped)
            warnings.extend(b.warnings)
            items.append(b.item)
        else:
            items.append(b)
    batch = items
    lengths = torch.tensor([len(b[1]["body"]) for b in batch], dtype=torch.long)
    max_len = int(lengths.max()) if len(batch) else 0
    src_input = {part: torch.stack([_pad_repeat_last(b[1][part], max_len) for b in batch])
                 for part in PARTS} if batch else {}
    src_input["attention_mask"] = (torch.arange(max_len)[None] < lengths[:, None]).long()
    src_input["name_batch"] = [b[0] for b in batch]
    src_input["src_length_batch"] = lengths
    src_input["skipped"] = skipped
    src_input["warnings"] = warnings
    tgt_input = {"gt_sentence": [b[2] for b in batch], "gt_gloss": [b[3] for b in batch]}
    if use_descriptions:
        from uni_sign_ext.alignment import collate_descriptions

        src_input.update(collate_descriptions([b[5] for b in batch], max_len))
    if rgb_support and batch:
        src_input.update(collate_support([b[4] for b in batch]))
    return src_input, tgt_input

"""Label files in upstream's formats: gzip-pickled dicts, or CSL-News' single JSON list.

A file that cannot be read, or holds no usable entry, is a user error (LabelFileError). One bad entry
is not: it is skipped and counted (`Labels.skipped`); an entry that is usable but suspicious (an
empty target sentence) is kept and counted (`Labels.warnings`).
"""
import gzip
import json
import os
import pickle
from dataclasses import dataclass, field

CSL_NEWS_TRAIN_SHARE = 0.99


class LabelFileError(ValueError):
    """A label file that is missing or cannot be parsed; the message names it and the fix."""


def _read_pickled_labels(path):
    try:
        with gzip.open(path, "rb") as f:
            labels = pickle.load(f)
    except FileNotFoundError:
        raise LabelFileError(f"{path}: label file not found (check the path in config.py or "
                             f"UNISIGN_ROOT)") from None
    except Exception as exc:
        raise LabelFileError(f"{path}: not a gzip-compressed pickle of labels "
                             f"({type(exc).__name__}: {exc})") from None
    if not isinstance(labels, dict):
        raise LabelFileError(f"{path}: expected a dict name -> label, found {type(labels).__name__}")
    return labels


@dataclass
class Labels:
    """One split's usable entries, plus what was skipped or is suspicious (name → reason)."""
    entries: dict
    skipped: dict = field(default_factory=dict)
    warnings: dict = field(default_factory=dict)


def _csl_news_entry(position, item):
    if not isinstance(item, dict):
        return f"item {position}", item
    pose = item.get("pose")
    video = item.get("video_path") or item.get("video") or (pose.replace(".pkl", ".mp4")
                                                            if isinstance(pose, str) else None)
    name = item.get("name") or (os.path.splitext(os.path.basename(video))[0] if isinstance(video, str)
                                else f"item {position}")
    # video_path names the pose file (its stem + .pkl) that S2T_Dataset_news loads: the item's `pose` when given
    pose_named = pose if isinstance(pose, str) and pose.strip() else video
    return name, {"name": name, "gloss": item.get("gloss", ""), "text": item.get("text"), "video_path": pose_named}


def csl_news_bounds(total, phase):
    """(start, end) of a CSL-News split in its JSON list of `total` items, as upstream cuts it: train is
    items [0, int(total × 0.99)), dev and test are both the rest."""
    cut = int(total * CSL_NEWS_TRAIN_SHARE)
    return (0, cut) if phase == "train" else (cut, total)


def read_csl_news_list(path):
    """The whole CSL-News JSON list (every split); LabelFileError when it is missing or not a list."""
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
    except FileNotFoundError:
        raise LabelFileError(f"{path}: label file not found (check the path in config.py or "
                             f"UNISIGN_ROOT)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelFileError(f"{path}: not a JSON list of labels ({exc})") from None
    if not isinstance(items, list):
        raise LabelFileError(f"{path}: expected a JSON list of labels, found {type(items).__name__}")
    return items


def csl_news_item_problem(item):
    """Why a CSL-News list item ({"video", "pose", "text"}) cannot be loaded, or None."""
    if not isinstance(item, dict):
        return f"entry is a {type(item).__name__}, not a dict"
    for key in ("video", "pose", "text"):
        if not isinstance(item.get(key), str):
            return f"'{key}' is {item.get(key)!r}, not a string"
    if not item["pose"].strip():
        return "'pose' is empty"
    return None


def _read_csl_news(path, phase):
    """CSL-News keeps one JSON list: the first 99 % is train, the last 1 % serves dev and test."""
    items = read_csl_news_list(path)
    start, end = csl_news_bounds(len(items), phase)
    return dict(_csl_news_entry(position, items[position]) for position in range(start, end))


def _entry_problem(entry):
    """Why an entry cannot be trained on, or None."""
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, not a dict"
    for key in ("text", "video_path"):
        if not isinstance(entry.get(key), str):
            return f"'{key}' is {entry.get(key)!r}, not a string"
    if not entry["video_path"].strip():
        return "'video_path' is empty"
    return None


def _gloss(gloss):
    if isinstance(gloss, list):
        return " ".join(str(g) for g in gloss)
    return gloss if isinstance(gloss, str) else ""


def load_labels(path, dataset, phase):
    """One split → Labels; entries are name -> {"name", "gloss", "text", "video_path"}, gloss one string.

    Raises LabelFileError when the file is unreadable, empty, or has no usable entry.
    """
    raw = _read_csl_news(path, phase) if dataset == "CSL_News" else _read_pickled_labels(path)
    labels = Labels({})
    for key, entry in raw.items():
        problem = _entry_problem(entry)
        if problem:
            labels.skipped[str(key)] = problem
            continue
        if not entry["text"].strip():
            labels.warnings[str(key)] = "empty target sentence"
        labels.entries[key] = dict(entry, gloss=_gloss(entry.get("gloss", "")), name=entry.get("name", key))
    if not labels.entries:
        why = f"all {len(raw)} entries are unusable (e.g. {next(iter(labels.skipped.values()))})" \
            if raw else "it holds no samples"
        raise LabelFileError(f"{path}: no usable {phase} sample: {why}; fix the file or config.py's label "
                             "paths (UNISIGN_ROOT)")
    return labels

"""Label files in upstream's formats: gzip-pickled dicts, or CSL-News' single JSON list."""
import gzip
import json
import os
import pickle

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


def _csl_news_entry(item):
    video = item.get("video_path") or item.get("video") or item.get("pose", "").replace(".pkl", ".mp4")
    name = item.get("name") or os.path.splitext(os.path.basename(video))[0]
    return name, {"name": name, "gloss": item.get("gloss", ""), "text": item["text"], "video_path": video}


def _read_csl_news(path, phase):
    """CSL-News keeps one JSON list: the first 99 % is train, the last 1 % serves dev and test."""
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
    except FileNotFoundError:
        raise LabelFileError(f"{path}: label file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelFileError(f"{path}: not a JSON list of labels ({exc})") from None
    cut = int(len(items) * CSL_NEWS_TRAIN_SHARE)
    chosen = items[:cut] if phase == "train" else items[cut:]
    return dict(_csl_news_entry(item) for item in chosen)


def load_labels(path, dataset, phase):
    """name -> {"name", "gloss", "text", "video_path"} for one split, gloss joined to one string."""
    raw = _read_csl_news(path, phase) if dataset == "CSL_News" else _read_pickled_labels(path)
    labels = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict) or "text" not in entry or "video_path" not in entry:
            raise LabelFileError(f"{path}: entry {key!r} lacks 'text' or 'video_path'")
        gloss = entry.get("gloss", "")
        labels[key] = dict(entry, gloss=" ".join(gloss) if isinstance(gloss, list) else gloss,
                           name=entry.get("name", key))
    return labels

"""Description files: the accepted formats and folder layouts (DESIGN.md "Description files").

A sample without a file has no descriptions (not an error). A malformed file is logged with its path
and reason, recorded in `DescriptionLoader.problems`, and the sample trains as "no descriptions".
Entries that cannot be used (empty text, negative or absurd frame numbers, duplicates) are dropped
and recorded the same way; the rest of the file is kept.
"""
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)
MAX_FRAME = 10_000_000
SPLITS = ("train", "dev", "test")
SAMPLE_SUFFIXES = (".mp4", ".pkl", ".json")


class DescriptionFormatError(ValueError):
    """A description file whose content is none of the accepted formats."""


class _JsonObject(dict):
    """A JSON object that remembers the keys it saw twice (json keeps the last silently)."""
    duplicates = ()


def _keep_first(pairs):
    obj, duplicates = _JsonObject(), []
    for key, value in pairs:
        if key in obj:
            duplicates.append(key)
        else:
            obj[key] = value
    obj.duplicates = duplicates
    return obj


def _frame_number(key):
    if isinstance(key, bool) or isinstance(key, float):
        raise DescriptionFormatError(f"frame {key!r} is not an integer")
    try:
        return int(key)
    except (TypeError, ValueError):
        raise DescriptionFormatError(f"frame {key!r} is not an integer") from None


def _entries(data):
    """(format name, [(frame, text)], duplicate keys) of a parsed document."""
    if isinstance(data, dict) and "descriptions" in data:
        fmt, entries, duplicates = _entries(data["descriptions"])
        return "wrapper", entries, duplicates
    if isinstance(data, dict):
        return "canonical", [(_frame_number(k), v) for k, v in data.items()], list(getattr(data, "duplicates", ()))
    if isinstance(data, list) and data and all(isinstance(x, dict) and "text" in x for x in data):
        if all("frame" in x for x in data):
            return "frames", [(_frame_number(x["frame"]), x["text"]) for x in data], []
        if all("start" in x and "end" in x for x in data):
            entries = []
            for x in data:
                start, end = _frame_number(x["start"]), _frame_number(x["end"])
                if not 0 <= start <= end <= MAX_FRAME:
                    raise DescriptionFormatError(f"segment [{start}, {end}] is not a valid frame range")
                entries += [(frame, x["text"]) for frame in range(start, end + 1)]
            return "segments", entries, []
    raise DescriptionFormatError("expected {frame: text}, {'descriptions': {...}}, [{'frame', 'text'}] "
                                 "or [{'start', 'end', 'text'}]")


def parse_descriptions_with_warnings(data):
    """A parsed document → ({frame: text}, format name, [warnings about dropped entries])."""
    fmt, entries, duplicates = _entries(data)
    descriptions = {}
    warnings = [f"frame {key!r}: duplicate key, the first text is kept" for key in duplicates]
    for frame, text in entries:
        if not isinstance(text, str) or not text.strip():
            warnings.append(f"frame {frame}: empty or non-text description dropped")
        elif not 0 <= frame <= MAX_FRAME:
            warnings.append(f"frame {frame}: frame number out of range, dropped")
        elif frame in descriptions:
            if descriptions[frame] != text.strip():
                warnings.append(f"frame {frame}: described twice, the first text is kept")
        else:
            descriptions[frame] = text.strip()
    return descriptions, fmt, warnings


def parse_descriptions(data):
    """A description document in any accepted format (as json parses it) → {frame: text}."""
    return parse_descriptions_with_warnings(data)[0]


def read_description_file(path):
    """→ (descriptions, metadata, warnings); raises DescriptionFormatError with the reason."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DescriptionFormatError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_keep_first)
    except json.JSONDecodeError as exc:
        raise DescriptionFormatError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    descriptions, fmt, warnings = parse_descriptions_with_warnings(data)
    metadata = {k: v for k, v in data.items() if k != "descriptions"} if fmt == "wrapper" else {}
    return descriptions, dict(metadata, path=str(path), format=fmt), warnings


def _name_variants(dataset):
    return {dataset, dataset.replace("_", "-"), dataset.replace("-", "_")}


def find_description_dir(desc_root, dataset):
    """<desc_root>/<dataset>, accepting CSL_Daily and CSL-Daily alike; None when absent."""
    for name in sorted(_name_variants(dataset)):
        folder = Path(desc_root) / name
        if folder.is_dir():
            return folder
    return None


def sample_key(sample_id):
    """Sample names as label files give them (How2Sign's end in .mp4) → the description file stem."""
    name = os.path.basename(str(sample_id))
    for suffix in SAMPLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _index_json_files(folder):
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {e.name[:-5]: Path(e.path) for e in entries if e.name.endswith(".json") and e.is_file()}


class DescriptionLoader:
    """Loads one sample's descriptions; file names are indexed once, not searched per sample."""

    def __init__(self, description_dir, phase=None):
        self.directory = Path(description_dir)
        self.problems = []
        self._files = {}
        # Later layers win: flat, then other splits, then this phase's split folder.
        layers = [self.directory]
        for split in SPLITS:
            if split != phase:
                layers += [self.directory / "split_data" / split, self.directory / split]
        if phase:
            layers += [self.directory / "split_data" / phase, self.directory / phase]
        for folder in layers:
            self._files.update(_index_json_files(folder))

    def sample_ids(self):
        return set(self._files)

    def load(self, sample_id):
        """→ ({frame: text}, metadata); ({}, {}) without a file; ({}, {path, error}) when malformed."""
        path = self._files.get(sample_key(sample_id))
        if path is None:
            return {}, {}
        try:
            descriptions, metadata, warnings = read_description_file(path)
        except (DescriptionFormatError, OSError) as exc:
            reason = str(exc)
            self.problems.append((str(path), reason))
            logger.warning("malformed description file %s: %s (sample trains without descriptions)", path, reason)
            return {}, {"path": str(path), "error": reason}
        for warning in warnings:
            self.problems.append((str(path), warning))
            logger.warning("description file %s: %s", path, warning)
        return descriptions, metadata

"""Description files: the accepted formats and folder layouts (DESIGN.md "Description files").

A sample without a file has no descriptions (not an error). A malformed file is logged with its path
and reason, recorded in `DescriptionLoader.problems`, and the sample trains as "no descriptions".
Entries that cannot be used (empty text, negative or absurd frame numbers, duplicates) are dropped
and recorded the same way; the rest of the file is kept.
"""
import json
import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)
MAX_FRAME = 10_000_000
SPLITS = ("train", "dev", "test")
SAMPLE_SUFFIXES = (".mp4", ".pkl", ".json")
_INTEGER = re.compile(r"[+-]?[0-9]+")
FORMATS_EXPECTED = ("expected {frame: text}, {'descriptions': {...}}, [{'frame': i, 'text': s}] "
                    "or [{'start': s, 'end': e, 'text': t}]")


class DescriptionFormatError(ValueError):
    """A description file whose content is none of the accepted formats."""


class _JsonObject(dict):
    """A JSON object that remembers the keys it saw twice (json.loads would keep the last silently)."""
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


def _frame_number(value):
    """A frame as JSON gives it (int, or a key string) → int; absurdly long numbers count as huge."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        digits = value.strip()
        # int() refuses strings of over 4300 digits; such a frame is out of range whatever it is.
        return int(digits) if len(digits) <= 20 else MAX_FRAME + 1
    raise DescriptionFormatError(f"frame {value!r} is not an integer")


def _text(frame, value):
    if value is None or isinstance(value, str):
        return value
    raise DescriptionFormatError(f"frame {frame}: the description is {type(value).__name__}, not text")


def _duplicate_key_warnings(obj):
    return [f"key {key!r} appears twice, the first is kept" for key in getattr(obj, "duplicates", ())]


def _entries(data):
    """(format name, [(frame, text)], warnings) of a document that is not a wrapper."""
    if isinstance(data, dict):
        entries = [(frame, _text(frame, v)) for frame, v in ((_frame_number(k), v) for k, v in data.items())]
        return "canonical", entries, _duplicate_key_warnings(data)
    if isinstance(data, list) and all(isinstance(x, dict) and "text" in x for x in data):
        if all("frame" in x for x in data):
            return "frames", [(_frame_number(x["frame"]), _text(x["frame"], x["text"])) for x in data], []
        if all("start" in x and "end" in x for x in data):
            return ("segments",) + _segment_entries(data)
    raise DescriptionFormatError(FORMATS_EXPECTED)


def _segment_entries(segments):
    """Segments → per-frame entries; bad or overlapping segments are reported once each, not per frame."""
    entries, warnings, covered = [], [], set()
    for x in segments:
        start, end = _frame_number(x["start"]), _frame_number(x["end"])
        text = _text(f"{start}-{end}", x["text"])
        if not 0 <= start <= end <= MAX_FRAME:
            warnings.append(f"segment [{start}, {end}] is not a valid frame range, dropped")
            continue
        if text is None or not text.strip():
            warnings.append(f"segment [{start}, {end}]: empty description dropped")
            continue
        frames = range(start, end + 1)
        overlap = sum(1 for f in frames if f in covered)
        if overlap:
            warnings.append(f"segment [{start}, {end}] overlaps earlier segments on {overlap} frames, "
                            "the earlier text is kept there")
        covered.update(frames)
        entries += [(f, text) for f in frames]
    return entries, warnings


def parse_descriptions_with_warnings(data):
    """A parsed document → ({frame: text}, format name, [warnings about dropped entries]).

    Raises DescriptionFormatError when the document is none of the accepted formats.
    """
    if isinstance(data, dict) and "descriptions" in data:
        inner, entries, warnings = _entries(data["descriptions"])
        fmt, warnings = "wrapper", _duplicate_key_warnings(data) + warnings
    else:
        fmt, entries, warnings = _entries(data)
        inner = fmt
    descriptions = {}
    for frame, text in entries:
        if text is None or not text.strip():
            warnings.append(f"frame {frame}: empty description dropped")
        elif not 0 <= frame <= MAX_FRAME:
            warnings.append(f"frame {frame}: frame number out of range [0, {MAX_FRAME}], dropped")
        elif frame not in descriptions:
            descriptions[frame] = text.strip()
        elif inner != "segments":  # overlapping segments were reported once per segment
            warnings.append(f"frame {frame}: described twice, the first text is kept")
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
    """The name as given first, then its underscore/hyphen spellings (CSL_Daily ~ CSL-Daily)."""
    return dict.fromkeys([dataset, dataset.replace("_", "-"), dataset.replace("-", "_")])


def find_description_dir(desc_root, dataset):
    """<desc_root>/<dataset>, accepting CSL_Daily and CSL-Daily alike; None when absent."""
    for name in _name_variants(dataset):
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
    """Loads one sample's descriptions; file names are indexed once, not searched per sample.

    Where a name exists in several folders, the first of these wins: this phase's split folder
    (`split_data/<phase>`, then `<phase>`), the flat folder, then the other splits' folders.
    Problems are recorded and logged once per file, however often the file is loaded.
    """

    def __init__(self, description_dir, phase=None):
        self.directory = Path(description_dir)
        self.problems = []
        self._reported = set()
        self._files = {}
        def split_folders(split):
            return [self.directory / "split_data" / split, self.directory / split]

        folders = (split_folders(phase) if phase else []) + [self.directory]
        for split in SPLITS:
            if split != phase:
                folders += split_folders(split)
        for folder in folders:
            for name, path in _index_json_files(folder).items():
                self._files.setdefault(name, path)

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
            self._report(path, [reason], "malformed description file %s: %s (the sample trains without "
                                         "descriptions)")
            return {}, {"path": str(path), "error": reason}
        self._report(path, warnings, "description file %s: %s")
        return descriptions, metadata

    def _report(self, path, reasons, message):
        if not reasons or path in self._reported:
            return
        self._reported.add(path)
        self.problems += [(str(path), reason) for reason in reasons]
        logger.warning(message, path, "; ".join(reasons))


def open_description_loader(desc_root, dataset, phase):
    """The split's DescriptionLoader, or None (warned) when the dataset has no description folder."""
    folder = find_description_dir(desc_root, dataset)
    if folder is None:
        logger.warning("no description folder for %s under %s: every %s sample trains as "
                       "'no descriptions' (run pre_training_checklist.py)", dataset, desc_root, phase)
        return None
    return DescriptionLoader(folder, phase=phase)

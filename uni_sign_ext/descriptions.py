"""Description files: the accepted formats and folder layouts (docs/descriptions.md).

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

import numpy as np

logger = logging.getLogger(__name__)
MAX_FRAME = 10_000_000
UNKNOWN_CLIP_FRAMES = 100_000  # segments are expanded at most this far when the clip is not known (~1 h)
MAX_FILE_BYTES = 16 * 2 ** 20  # a description file is a few KiB; more is not one clip's descriptions
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


def _entries(data, frame_limit):
    """(format name, [(frame, text)], warnings, [(first, last) segment frames beyond frame_limit])
    of a document that is not a wrapper."""
    if isinstance(data, dict):
        entries = [(frame, _text(frame, v)) for frame, v in ((_frame_number(k), v) for k, v in data.items())]
        return "canonical", entries, _duplicate_key_warnings(data), []
    if isinstance(data, list) and all(isinstance(x, dict) and "text" in x for x in data):
        if all("frame" in x for x in data):
            return "frames", [(_frame_number(x["frame"]), _text(x["frame"], x["text"])) for x in data], [], []
        if all("start" in x and "end" in x for x in data):
            return ("segments",) + _segment_entries(data, frame_limit)
    raise DescriptionFormatError(FORMATS_EXPECTED)


def _segment_entries(segments, frame_limit):
    """Segments → per-frame entries below `frame_limit`; the work is bounded by the limit, not by the
    numbers in the file. Bad or overlapping segments are reported once each, not per frame."""
    entries, warnings, beyond = [], [], []
    covered = np.zeros(frame_limit, dtype=bool)
    for x in segments:
        start, end = _frame_number(x["start"]), _frame_number(x["end"])
        text = _text(f"{start}-{end}", x["text"])
        if not 0 <= start <= end <= MAX_FRAME:
            warnings.append(f"segment [{start}, {end}] is not a valid frame range, dropped")
            continue
        if text is None or not text.strip():
            warnings.append(f"segment [{start}, {end}]: empty description dropped")
            continue
        if end >= frame_limit:
            beyond.append((max(start, frame_limit), end))
        if start >= frame_limit:
            continue
        span = covered[start:end + 1]
        new = np.flatnonzero(~span) + start
        if len(new) < len(span):
            warnings.append(f"segment [{start}, {end}] overlaps earlier segments on {len(span) - len(new)} "
                            "frames, the earlier text is kept there")
        span[:] = True
        entries += [(int(f), text) for f in new]
    return entries, warnings, beyond


def parse_descriptions_with_warnings(data, clip_end=None):
    """A parsed document → ({frame: text}, format name, [warnings about dropped entries]).

    With `clip_end` (the clip's frame count), descriptions at frames ≥ clip_end are dropped and
    reported in one warning: they describe frames the pose file does not have.
    Raises DescriptionFormatError when the document is none of the accepted formats.
    """
    frame_limit = clip_end if clip_end is not None else UNKNOWN_CLIP_FRAMES
    if isinstance(data, dict) and "descriptions" in data:
        inner, entries, warnings, segments_beyond = _entries(data["descriptions"], frame_limit)
        fmt, warnings = "wrapper", _duplicate_key_warnings(data) + warnings
    else:
        fmt, entries, warnings, segments_beyond = _entries(data, frame_limit)
        inner = fmt
    if clip_end is None:
        warnings += [f"segment [{first}, {last}] reaches beyond frame {UNKNOWN_CLIP_FRAMES - 1}, where no clip "
                     "is known to end: not expanded there" for first, last in segments_beyond]
    beyond = [frame for pair in segments_beyond for frame in pair] if clip_end is not None else []
    descriptions = {}
    for frame, text in entries:
        if text is None or not text.strip():
            warnings.append(f"frame {frame}: empty description dropped")
        elif not 0 <= frame <= MAX_FRAME:
            warnings.append(f"frame {frame}: frame number out of range [0, {MAX_FRAME}], dropped")
        elif clip_end is not None and frame >= clip_end:
            beyond.append(frame)
        elif frame not in descriptions:
            descriptions[frame] = text.strip()
        elif inner != "segments":  # overlapping segments were reported once per segment
            warnings.append(f"frame {frame}: described twice, the first text is kept")
    if beyond:
        warnings.append(f"descriptions of frames {min(beyond)}…{max(beyond)}, beyond the clip's {clip_end} frames, "
                        "dropped (frame numbers must count the pose file's frames)")
    return descriptions, fmt, warnings


def parse_descriptions(data, clip_end=None):
    """A description document in any accepted format (as json parses it) → {frame: text}."""
    return parse_descriptions_with_warnings(data, clip_end)[0]


def read_description_file(path, clip_end=None):
    """→ (descriptions, metadata, warnings); raises DescriptionFormatError with the reason.

    The work is bounded: files over MAX_FILE_BYTES are refused unread, nesting deeper than the
    parser's recursion limit is a format error, and segments expand no further than the clip.
    """
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise DescriptionFormatError(f"{size / 2 ** 20:.1f} MiB, more than the {MAX_FILE_BYTES >> 20} MiB "
                                     "a description file may have")
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DescriptionFormatError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_keep_first)
    except json.JSONDecodeError as exc:
        raise DescriptionFormatError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise DescriptionFormatError("nested too deeply to be a description file") from None
    descriptions, fmt, warnings = parse_descriptions_with_warnings(data, clip_end)
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


def _index_json_files(folder, problems):
    """{stem: path} of the folder's `.json` files; entries that look like descriptions but cannot be
    (a directory, a symlink loop, another spelling of .json) are appended to `problems`."""
    try:
        if not folder.is_dir():
            return {}
        with os.scandir(folder) as entries:
            entries = list(entries)
    except OSError as exc:
        problems.append(f"{folder}: unreadable folder ({exc.strerror or exc}), its descriptions are not used")
        return {}
    files = {}
    for entry in sorted(entries, key=lambda e: e.name):
        if not entry.name.lower().endswith(".json"):
            continue
        try:
            is_file = entry.is_file()
        except OSError as exc:  # a symlink loop, for one
            problems.append(f"{entry.path}: unreadable ({exc.strerror or exc}), ignored")
            continue
        if not entry.name.endswith(".json"):
            problems.append(f"{entry.path}: ignored, description files must end in lower-case .json")
        elif not is_file:
            problems.append(f"{entry.path}: not a file, ignored")
        else:
            files[entry.name[:-5]] = Path(entry.path)
    return files


class DescriptionLoader:
    """Loads one sample's descriptions; file names are indexed once, not searched per sample.

    Where a name exists in several folders, the first of these wins: this phase's split folder
    (`split_data/<phase>`, then `<phase>`), the flat folder, then the other splits' folders; each such
    conflict is a layout problem. Layout problems (`layout_problems`) are found once, at start;
    problems of files are recorded and logged once per file, however often the file is loaded.
    """

    def __init__(self, description_dir, phase=None):
        self.directory = Path(description_dir)
        self.problems = []
        self.layout_problems = []
        self._reported = set()
        self._files = {}

        def split_folders(split):
            return [self.directory / "split_data" / split, self.directory / split]

        self.phase_folders = split_folders(phase) if phase else [self.directory]
        folders = (split_folders(phase) if phase else []) + [self.directory]
        for split in SPLITS:
            if split != phase:
                folders += split_folders(split)
        shadowed = {}
        for folder in folders:
            for name, path in _index_json_files(folder, self.layout_problems).items():
                if name in self._files and (phase is None or folder in self.phase_folders
                                            or folder == self.directory):
                    shadowed.setdefault(name, []).append(path)
                self._files.setdefault(name, path)
        if shadowed:
            example = next(iter(shadowed))
            self.layout_problems.append(
                f"{len(shadowed)} samples have description files in several folders; {self._files[example]} "
                f"is used, not {shadowed[example][0]} (e.g.); remove the copies that should not be used")
        for problem in self.layout_problems:
            logger.warning("description folder: %s", problem)

    def sample_ids(self):
        return set(self._files)

    def phase_sample_ids(self):
        """Names of the files that sit in this phase's own folders (they should all be labelled)."""
        return {name for name, path in self._files.items() if path.parent in self.phase_folders}

    def load(self, sample_id, clip_end=None):
        """→ ({frame: text}, metadata); ({}, {}) without a file; ({}, {path, error}) when malformed."""
        return self.read(sample_id, clip_end)[:2]

    def read(self, sample_id, clip_end=None):
        """→ (descriptions, metadata, warnings): `load` plus this file's warnings (every load, for counts)."""
        path = self._files.get(sample_key(sample_id))
        if path is None:
            return {}, {}, []
        try:
            descriptions, metadata, warnings = read_description_file(path, clip_end)
        except (DescriptionFormatError, OSError) as exc:
            reason = str(exc) if isinstance(exc, DescriptionFormatError) else f"unreadable ({exc.strerror or exc})"
            self._report(path, [reason], "malformed description file %s: %s (the sample trains without "
                                         "descriptions)")
            return {}, {"path": str(path), "error": reason}, []
        self._report(path, warnings, "description file %s: %s")
        return descriptions, metadata, warnings

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

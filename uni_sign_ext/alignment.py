"""Smart-interpolation alignment of described frames to the sampled original frames (docs/descriptions.md).

For each sampled frame f: an exact description → that text (has_description = 1); described frames on
both sides → interpolate the two *encoded features*, w = (f − l)/(r − l) towards r (equal texts collapse
to one); one side only → the nearest text; none at all → nothing (the mask embedding stands in).
The per-video result indexes the video's unique texts, so each text is encoded once, never per frame.
"""
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class AlignedDescriptions:
    texts: list              # this video's unique texts, in order of first use
    left: np.ndarray         # (T,) int64 index into texts, −1 = no text
    right: np.ndarray        # (T,) int64; equals left for single-text frames
    weight: np.ndarray       # (T,) float32 weight towards `right`
    has_description: np.ndarray  # (T,) float32, 1 only on exact matches


def align_descriptions(descriptions, frame_indices):
    """Vectorised alignment: {frame: text} (str or int keys) × sampled original frames → AlignedDescriptions."""
    frames = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    count = len(frames)
    if not descriptions:
        return AlignedDescriptions([], np.full(count, -1, np.int64), np.full(count, -1, np.int64),
                                   np.zeros(count, np.float32), np.zeros(count, np.float32))
    described = sorted({int(k): v for k, v in descriptions.items()}.items())
    keys = np.array([k for k, _ in described], dtype=np.int64)
    text_ids, texts = _unique_ids([v for _, v in described])

    pos = np.searchsorted(keys, frames, side="left")          # first described frame ≥ f
    exact = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == frames)
    left_pos = np.where(exact, pos, pos - 1)                   # nearest described frame ≤ f
    right_pos = pos                                            # nearest described frame ≥ f
    has_left, has_right = left_pos >= 0, right_pos < len(keys)
    left_pos = np.clip(left_pos, 0, len(keys) - 1)
    right_pos = np.clip(right_pos, 0, len(keys) - 1)
    left = np.where(has_left, text_ids[left_pos], text_ids[right_pos])
    right = np.where(has_right, text_ids[right_pos], text_ids[left_pos])
    both = has_left & has_right & ~exact
    span = np.where(both, keys[right_pos] - keys[left_pos], 1)
    weight = np.where(both, (frames - keys[left_pos]) / span, 0.0).astype(np.float32)
    weight[left == right] = 0.0                                # equal neighbouring texts collapse to one
    # Re-index to the texts this video uses, in order of first use.
    used = np.stack([left, right], axis=1).reshape(-1)
    _, first = np.unique(used, return_index=True)
    order = used[np.sort(first)]
    remap = np.empty(len(texts), dtype=np.int64)
    remap[order] = np.arange(len(order))
    return AlignedDescriptions([texts[i] for i in order], remap[left], remap[right], weight,
                               exact.astype(np.float32))


def _unique_ids(values):
    """Index of each value in the list of distinct values (first-appearance order)."""
    index = {}
    ids = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
    return ids, list(index)


class TemporalAligner:
    """The user's API: `align()` → (aligned, has_description), one entry per sampled frame.

    aligned[i] is a str (exact or nearest), None (no descriptions at all), or (left_text, right_text, w)
    meaning (1 − w)·enc(left) + w·enc(right).
    """

    def __init__(self, descriptions, frame_indices):
        self.descriptions = descriptions
        self.frame_indices = frame_indices

    def align(self):
        plan = align_descriptions(self.descriptions, self.frame_indices)
        aligned = []
        for left, right, w in zip(plan.left, plan.right, plan.weight):
            if left < 0:
                aligned.append(None)
            elif left == right:
                aligned.append(plan.texts[left])
            else:
                aligned.append((plan.texts[left], plan.texts[right], float(w)))
        return aligned, plan.has_description.astype(int).tolist()


def collate_aligned(items, max_len):
    """Batch the videos' plans over the batch's unique texts; padded frames carry no text.

    desc_video_texts is (B, U_max) with U_max ≥ 1, so a batch without any text still has a column (all −1).
    """
    index = {}  # text → position in the batch's unique texts
    batch = len(items)
    left = torch.full((batch, max_len), -1, dtype=torch.long)
    right = torch.full((batch, max_len), -1, dtype=torch.long)
    weight = torch.zeros(batch, max_len)
    has = torch.zeros(batch, max_len)
    per_video = []
    for row, item in enumerate(items):
        if len(item.left) > max_len:
            raise ValueError(f"video {row} has {len(item.left)} aligned frames, more than max_len={max_len}")
        ids = np.array([index.setdefault(t, len(index)) for t in item.texts] + [-1], dtype=np.int64)
        per_video.append(ids[:-1])
        length = len(item.left)
        left[row, :length] = torch.from_numpy(ids[item.left])   # −1 indexes the trailing −1
        right[row, :length] = torch.from_numpy(ids[item.right])
        weight[row, :length] = torch.from_numpy(item.weight)
        has[row, :length] = torch.from_numpy(item.has_description)
    video_texts = torch.full((batch, max([len(v) for v in per_video] + [1])), -1, dtype=torch.long)
    for row, ids in enumerate(per_video):
        video_texts[row, :len(ids)] = torch.from_numpy(ids)
    return {"desc_texts": list(index), "desc_left": left, "desc_right": right, "desc_weight": weight,
            "has_description": has, "desc_video_texts": video_texts}


def aligned_sample_descriptions(loader, name, frames, clip_end=None):
    """One sample's descriptions aligned to its sampled frames → (AlignedDescriptions, problem or None,
    [warnings about the file's entries]); with `clip_end`, descriptions beyond the clip are dropped.

    `loader` may be None (no description folder): the sample then has no descriptions.
    """
    descriptions, metadata, warnings = loader.read(name, clip_end) if loader is not None else ({}, {}, [])
    problem = (metadata["path"], metadata["error"]) if "error" in metadata else None
    warnings = [f"description file {metadata['path']}: {w}" for w in warnings]
    return align_descriptions(descriptions, frames), problem, warnings


def collate_descriptions(entries, max_len):
    """The batch fields for a list of aligned_sample_descriptions() results (plus the problems seen)."""
    fields = collate_aligned([entry[0] for entry in entries], max_len)
    fields["desc_problems"] = [entry[1] for entry in entries if entry[1] is not None]
    return fields

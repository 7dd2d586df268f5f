"""Smart-interpolation alignment (docs/descriptions.md, "Alignment") and the batch collation of its plans."""
import random

import numpy as np
import pytest
import torch

from temporal_alignment import TemporalAligner
from uni_sign_ext.alignment import AlignedDescriptions, align_descriptions, collate_aligned


def align(descriptions, frames):
    return TemporalAligner(descriptions, frames).align()


def assert_aligned(actual, expected):
    """Compare aligned lists, weights approximately (the plan stores them as float32)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        if isinstance(want, tuple):
            assert isinstance(got, tuple) and got[:2] == want[:2]
            assert got[2] == pytest.approx(want[2], abs=1e-6)
        else:
            assert got == want


def test_users_worked_example():
    aligned, has = align({0: "t0", 2: "t2", 5: "t5"}, [0, 1, 2, 4, 5])
    assert_aligned(aligned, ["t0", ("t0", "t2", 0.5), "t2", ("t2", "t5", 2 / 3), "t5"])
    assert has == [1, 0, 1, 0, 1]


def test_worked_example_plan():
    plan = align_descriptions({0: "t0", 2: "t2", 5: "t5"}, [0, 1, 2, 4, 5])
    assert plan.texts == ["t0", "t2", "t5"]
    assert plan.left.tolist() == [0, 0, 1, 1, 2]
    assert plan.right.tolist() == [0, 1, 1, 2, 2]
    np.testing.assert_allclose(plan.weight, [0, 0.5, 0, 2 / 3, 0], atol=1e-6)
    assert plan.has_description.tolist() == [1, 0, 1, 0, 1]
    assert plan.left.dtype == np.int64 and plan.weight.dtype == np.float32
    assert plan.has_description.dtype == np.float32


def test_equidistant_frame_interpolates_half_way():
    aligned, has = align({10: "a", 20: "b"}, [15, 11, 19])
    assert_aligned(aligned, [("a", "b", 0.5), ("a", "b", 0.1), ("a", "b", 0.9)])
    assert has == [0, 0, 0]


def test_interpolation_between_equal_texts_collapses():
    aligned, has = align({0: "same", 4: "same", 8: "other"}, [2, 4, 6])
    assert_aligned(aligned, ["same", "same", ("same", "other", 0.5)])
    assert has == [0, 1, 0]
    plan = align_descriptions({0: "same", 4: "same", 8: "other"}, [2, 4, 6])
    assert plan.texts == ["same", "other"]
    assert plan.left.tolist() == [0, 0, 0] and plan.right.tolist() == [0, 0, 1]
    assert plan.weight[0] == 0.0


def test_unsorted_string_keys():
    aligned, has = align({"5": "t5", "0": "t0", "2": "t2"}, [0, 1, 2, 4, 5])
    assert_aligned(aligned, ["t0", ("t0", "t2", 0.5), "t2", ("t2", "t5", 2 / 3), "t5"])
    assert has == [1, 0, 1, 0, 1]


def test_frames_outside_the_described_range_take_the_nearest_text():
    aligned, has = align({3: "first", 7: "last"}, [0, 2, 3, 7, 8, 100])
    assert aligned == ["first", "first", "first", "last", "last", "last"]
    assert has == [0, 0, 1, 1, 0, 0]


def test_single_description_covers_every_frame():
    aligned, has = align({4: "only"}, [0, 4, 9])
    assert aligned == ["only"] * 3
    assert has == [0, 1, 0]


def test_video_without_descriptions():
    aligned, has = align({}, [0, 1, 2])
    assert aligned == [None, None, None]
    assert has == [0, 0, 0]
    plan = align_descriptions({}, [0, 1, 2])
    assert plan.texts == [] and plan.left.tolist() == [-1] * 3 and plan.right.tolist() == [-1] * 3
    assert plan.left.dtype == np.int64


def test_no_frames():
    plan = align_descriptions({0: "a"}, [])
    assert plan.texts == [] and len(plan.left) == 0
    assert align({0: "a"}, []) == ([], [])


def test_sampled_indices_with_a_start_offset():
    """Pose files that start at frame 100 sample original indices 100.. — not 0..T−1."""
    descriptions = {100: "a", 104: "b", 110: "c"}
    aligned, has = align(descriptions, list(range(100, 112, 2)))
    assert_aligned(aligned, ["a", ("a", "b", 0.5), "b", ("b", "c", 2 / 6), ("b", "c", 4 / 6), "c"])
    assert has == [1, 0, 1, 0, 0, 1]
    # Aligning to 0..T−1 instead would give a different answer: every frame before the first description.
    assert align(descriptions, range(6))[0] == ["a"] * 6


def test_repeated_frame_indices():
    aligned, has = align({0: "a", 4: "b"}, [0, 0, 2, 2, 4])
    assert_aligned(aligned, ["a", "a", ("a", "b", 0.5), ("a", "b", 0.5), "b"])
    assert has == [1, 1, 0, 0, 1]


def reference(descriptions, frames):
    """The rule of docs/descriptions.md written out frame by frame, independently of the vectorised plan."""
    described = {int(k): v for k, v in descriptions.items()}
    aligned, has = [], []
    for f in frames:
        lower = [d for d in described if d <= f]
        upper = [d for d in described if d >= f]
        if f in described:
            aligned.append(described[f])
        elif lower and upper:
            l, r = max(lower), min(upper)
            same = described[l] == described[r]
            aligned.append(described[l] if same else (described[l], described[r], (f - l) / (r - l)))
        elif lower or upper:
            aligned.append(described[max(lower)] if lower else described[min(upper)])
        else:
            aligned.append(None)
        has.append(int(f in described))
    return aligned, has


def random_case(rng):
    """Described frames of a video and the frames a max_length-limited loader would sample from it."""
    start, duration = rng.randrange(0, 300), rng.randrange(1, 200)
    words = ["a", "b", "c", "d"][: rng.randrange(1, 5)]  # few words, so equal neighbours happen
    described = rng.sample(range(start - 5, start + duration + 5), rng.randrange(0, min(duration, 30)))
    descriptions = {(str(d) if rng.random() < 0.5 else d): rng.choice(words) for d in described if d >= 0}
    k = rng.randrange(1, duration + 1)
    frames = [f + start for f in sorted(rng.sample(range(duration), k))]
    return descriptions, frames


def test_matches_the_rule_on_random_cases():
    rng = random.Random(1)
    for _ in range(200):
        descriptions, frames = random_case(rng)
        aligned, has = align(descriptions, frames)
        expected, expected_has = reference(descriptions, frames)
        assert_aligned(aligned, expected)
        assert has == expected_has


def test_plan_and_temporal_aligner_agree_on_random_cases():
    rng = random.Random(2)
    for _ in range(200):
        descriptions, frames = random_case(rng)
        plan = align_descriptions(descriptions, frames)
        aligned, has = align(descriptions, frames)
        assert plan.has_description.tolist() == has
        for i, entry in enumerate(aligned):
            left, right, w = plan.left[i], plan.right[i], plan.weight[i]
            if entry is None:
                assert left == right == -1 and w == 0
            elif isinstance(entry, str):
                assert left == right and plan.texts[left] == entry and w == 0
            else:
                assert (plan.texts[left], plan.texts[right]) == entry[:2] and w == pytest.approx(entry[2])
        # texts are the video's unique texts, in order of first use, and all of them are used
        used = [plan.texts[j] for i in range(len(frames)) for j in (plan.left[i], plan.right[i]) if j >= 0]
        assert plan.texts == list(dict.fromkeys(used))


def plan_of(texts, left, right, weight, has):
    return AlignedDescriptions(texts, np.array(left, np.int64), np.array(right, np.int64),
                               np.array(weight, np.float32), np.array(has, np.float32))


def test_collate_remaps_indices_and_pads():
    first = plan_of(["x", "y"], [0, 0, 1], [0, 1, 1], [0, 0.25, 0], [1, 0, 1])
    second = plan_of(["y", "z"], [0, 1], [1, 1], [0.5, 0], [0, 1])
    empty = plan_of([], [-1, -1, -1, -1], [-1, -1, -1, -1], [0] * 4, [0] * 4)
    batch = collate_aligned([first, second, empty], max_len=4)
    assert batch["desc_texts"] == ["x", "y", "z"]
    assert batch["desc_left"].tolist() == [[0, 0, 1, -1], [1, 2, -1, -1], [-1] * 4]
    assert batch["desc_right"].tolist() == [[0, 1, 1, -1], [2, 2, -1, -1], [-1] * 4]
    assert batch["desc_weight"].tolist() == [[0, 0.25, 0, 0], [0.5, 0, 0, 0], [0] * 4]
    assert batch["has_description"].tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0] * 4]
    assert batch["desc_video_texts"].tolist() == [[0, 1], [1, 2], [-1, -1]]
    assert batch["desc_left"].dtype == batch["desc_video_texts"].dtype == torch.long
    assert batch["desc_weight"].dtype == batch["has_description"].dtype == torch.float32


def test_collate_of_aligned_videos_points_at_the_right_texts():
    plans = [align_descriptions({0: "t0", 2: "t2", 5: "t5"}, [0, 1, 2, 4, 5]),
             align_descriptions({"3": "t5", "9": "new"}, [3, 6])]
    batch = collate_aligned(plans, max_len=6)
    texts = batch["desc_texts"]
    assert texts == ["t0", "t2", "t5", "new"]
    for row, plan in enumerate(plans):
        for i in range(len(plan.left)):
            assert texts[batch["desc_left"][row, i]] == plan.texts[plan.left[i]]
            assert texts[batch["desc_right"][row, i]] == plan.texts[plan.right[i]]
    assert batch["desc_left"][0, 5] == -1 and batch["desc_left"][1, 2:].tolist() == [-1] * 4
    assert batch["desc_video_texts"].tolist() == [[0, 1, 2], [2, 3, -1]]


def test_collate_without_any_text_keeps_one_column():
    batch = collate_aligned([align_descriptions({}, [0, 1])], max_len=3)
    assert batch["desc_texts"] == []
    assert batch["desc_video_texts"].tolist() == [[-1]]
    assert batch["desc_left"].tolist() == [[-1, -1, -1]]


def test_collate_refuses_videos_longer_than_max_len():
    with pytest.raises(ValueError, match="max_len"):
        collate_aligned([align_descriptions({0: "a"}, [0, 1, 2])], max_len=2)

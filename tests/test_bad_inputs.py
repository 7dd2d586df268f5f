"""Bad input through the data path, on broken copies of the mini-world: a clear error naming the
file, or a counted and logged skip — never a crash mid-epoch and never a silent loss."""
import gzip
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

import config
from conftest import parse_args
from datasets import S2T_Dataset
from fine_tuning import ProblemLog


@pytest.fixture
def broken_world(mini_world, tmp_path, monkeypatch):
    """A writable copy of the mini-world, with config.py pointed at it."""
    import importlib

    root = tmp_path / "world"
    shutil.copytree(mini_world, root)
    monkeypatch.setenv("UNISIGN_ROOT", str(root))
    importlib.reload(config)
    yield root
    monkeypatch.delenv("UNISIGN_ROOT")
    importlib.reload(config)


def train_labels(root):
    with gzip.open(root / "data" / "CSL_Daily" / "labels.train", "rb") as f:
        return pickle.load(f)


def pose_path(root, name):
    return root / "dataset" / "CSL_Daily" / "pose_format" / f"{name}.pkl"


def desc_path(root, name):
    return root / "description" / "CSL_Daily" / "split_data" / "train" / f"{name}.json"


def epoch(dataset, batch_size=4):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate_fn)
    return list(loader)


def break_poses(root, names):
    """Five kinds of unusable pose file, one per name; returns name -> expected reason."""
    truncated = pose_path(root, names[0]).read_bytes()
    pose_path(root, names[0]).write_bytes(truncated[: len(truncated) // 3])
    with open(pose_path(root, names[1]), "wb") as f:
        pickle.dump({"keypoints": []}, f)
    with open(pose_path(root, names[2]), "wb") as f:
        pickle.dump({"keypoints": [], "scores": []}, f)
    data = pickle.loads(pose_path(root, names[3]).read_bytes())
    data.update(start=5, end=5)
    pose_path(root, names[3]).write_bytes(pickle.dumps(data))
    pose_path(root, names[4]).unlink()
    return {names[0]: "unreadable pickle", names[1]: "'keypoints' and 'scores'", names[2]: "no frames",
            names[3]: "no usable frames", names[4]: "not found"}


@pytest.mark.parametrize("phase", ["train", "dev"])
def test_unusable_pose_files_are_counted_skips(broken_world, phase, caplog):
    labels_file = {"train": config.train_label_paths, "dev": config.dev_label_paths}[phase]["CSL_Daily"]
    with gzip.open(labels_file, "rb") as f:
        names = sorted(pickle.load(f))
    dataset = S2T_Dataset(labels_file, parse_args("--max_length", "32"), phase)
    expected = break_poses(broken_world, names[:5])
    batches = epoch(dataset)
    skipped = [s for src, _ in batches for s in src["skipped"]]
    assert {s.name: s.reason for s in skipped}.keys() == expected.keys()
    for sample in skipped:
        assert expected[sample.name] in sample.reason and sample.name in sample.path
    seen = [n for src, _ in batches for n in src["name_batch"]]
    if phase == "train":   # replaced by the next good samples: every batch keeps its size
        assert len(seen) == len(names) and not set(expected) & set(seen)
    else:                  # evaluation drops them: every other sample is translated once
        assert sorted(seen) == sorted(set(names) - set(expected))


def test_label_without_pose_file_is_reported_at_start(broken_world, caplog):
    name = sorted(train_labels(broken_world))[0]
    pose_path(broken_world, name).unlink()
    dataset = S2T_Dataset(config.train_label_paths["CSL_Daily"], parse_args(), "train")
    assert dataset.missing_pose == [name] and name not in dataset.names
    assert f"1 of {len(dataset.names) + 1} labelled samples have no pose file" in caplog.text and name in caplog.text


def test_nan_infinite_and_one_frame_poses_still_train(broken_world):
    names = sorted(train_labels(broken_world))
    data = pickle.loads(pose_path(broken_world, names[0]).read_bytes())
    data["keypoints"][0][0, 100] = np.nan
    data["keypoints"][1][0, 5] = np.inf
    pose_path(broken_world, names[0]).write_bytes(pickle.dumps(data))
    one = pickle.loads(pose_path(broken_world, names[1]).read_bytes())
    one = {"keypoints": one["keypoints"][:1], "scores": one["scores"][:1]}
    pose_path(broken_world, names[1]).write_bytes(pickle.dumps(one))
    dataset = S2T_Dataset(config.train_label_paths["CSL_Daily"], parse_args(), "train")
    for index in (dataset.names.index(names[0]), dataset.names.index(names[1])):
        _, pose, *_ = dataset[index]
        assert all(torch.isfinite(part).all() for part in pose.values())
    assert len(dataset[dataset.names.index(names[1])][1]["body"]) == 1


def test_bad_description_files_are_reported_and_train_without(broken_world):
    names = [n for n in sorted(train_labels(broken_world)) if desc_path(broken_world, n).exists()][:6]
    desc_path(broken_world, names[0]).write_bytes(b"\xff\xfe\x00 not utf-8")
    desc_path(broken_world, names[1]).write_text("{not json")
    desc_path(broken_world, names[2]).write_text(json.dumps({"0": "   ", "1": "", "4": "left hand moves up"}))
    desc_path(broken_world, names[3]).write_text(json.dumps({"-3": "right hand moves up", "99999999999": "x",
                                                             "2": "right hand moves up"}))
    desc_path(broken_world, names[4]).write_text('{"1": "left hand moves up", "1": "right hand moves up"}')
    desc_path(broken_world, names[5]).write_text(json.dumps([1, 2, 3]))
    args = parse_args("--use_descriptions", "--max_length", "32")
    dataset = S2T_Dataset(config.train_label_paths["CSL_Daily"], args, "train")
    batches = epoch(dataset)
    problems = [p for src, _ in batches for p in src["desc_problems"]]
    assert sorted(p[0] for p in problems) == sorted(str(desc_path(broken_world, n)) for n in (names[0], names[1], names[5]))
    reasons = " ".join(r for _, r in dataset.description_loader.problems)
    assert all(word in reasons for word in ("UTF-8", "JSON", "empty", "out of range", "twice"))
    by_name = {}
    for src, _ in batches:
        for row, name in enumerate(src["name_batch"]):
            by_name[name] = (src, row)
    src, row = by_name[names[0]]
    assert (src["desc_left"][row] == -1).all()  # malformed: trains as "no descriptions"
    src, row = by_name[names[2]]
    texts = {src["desc_texts"][i] for i in src["desc_left"][row].tolist() if i >= 0}
    assert texts == {"left hand moves up"}  # the empty entries were dropped, the good one kept


def test_problem_log_reports_counts(capsys, caplog):
    from datasets import SampleWarning, SkippedSample

    log = ProblemLog()
    log.add({"skipped": [SkippedSample("a", "/x/a.pkl", "no frames")], "desc_problems": [("/d/b.json", "not JSON")]})
    log.add({"skipped": [SkippedSample("c", "/x/c.pkl", "unreadable pickle")]})
    log.add({"skipped": [SkippedSample("a", "/x/a.pkl", "no frames")], "desc_problems": [("/d/b.json", "not JSON")],
             "warnings": [SampleWarning("d", "3 frames with NaN keypoints"), SampleWarning("d", "empty target")]})
    log.add({"skipped": [], "warnings": [SampleWarning("d", "empty target")]})
    assert log.report("epoch 3") == (2, 1, 2)  # met twice (another rank, a replacement chain): counted once
    assert "epoch 3: 2 samples skipped for unusable pose files, 1 malformed description files, 2 warnings" \
        in capsys.readouterr().out
    assert "/x/a.pkl" in caplog.text and "/d/b.json" in caplog.text
    assert "sample d: 3 frames with NaN keypoints" in caplog.text and "sample d: empty target" in caplog.text

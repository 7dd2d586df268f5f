"""A table of broken worlds: copies of the mini-world with one problem each → the outcome the policy in
docs/errors.md gives it (user error / skipped sample / undescribed sample / counted warning), for the
training data path and for the checklist, with the counts: nothing is lost (labelled = used + rejected at
start + skipped while loading)."""
import gzip
import importlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

import config
import pre_training_checklist
from conftest import parse_args
from datasets import S2T_Dataset
from uni_sign_ext.labels import LabelFileError

POSES = "dataset/CSL_Daily/pose_format"
REPO = Path(__file__).resolve().parents[1]


def labels_file(root, split):
    return root / "data" / "CSL_Daily" / f"labels.{split}"


def descriptions(root, split):
    return root / "description" / "CSL_Daily" / "split_data" / split


def read_labels(root, split):
    with gzip.open(labels_file(root, split), "rb") as f:
        return pickle.load(f)


def write_labels(root, split, labels):
    with gzip.open(labels_file(root, split), "wb") as f:
        pickle.dump(labels, f)


def edit_label(field_name, value):
    def apply(root, name, split):
        labels = read_labels(root, split)
        labels[name][field_name] = value
        write_labels(root, split, labels)
    return apply


def edit_pose(change):
    def apply(root, name, split):
        path = root / POSES / f"{name}.pkl"
        data = pickle.loads(path.read_bytes())
        change(data)
        path.write_bytes(pickle.dumps(data))
    return apply


def all_keypoints(value):
    def change(data):
        data["keypoints"] = [np.full_like(k, value) for k in data["keypoints"]]
    return change


def zero_scores(data):
    data["scores"] = [np.zeros_like(s) for s in data["scores"]]


def some_nan(data):
    data["keypoints"][data.get("start") or 0][0, 100] = np.nan  # the first frame is sampled: clips ≤ max_length


def oversized(folder_of, suffix, limit):
    """The sample's file in folder_of(root, split) grown (sparse: no disk used) one byte past `limit`."""
    def apply(root, name, split):
        path = folder_of(root, split) / f"{name}{suffix}"
        with open(path, "r+b") as f:
            f.truncate(limit + 1)
    return apply


def write_description(content):
    def apply(root, name, split):
        path = descriptions(root, split) / f"{name}.json"
        path.write_text(content) if isinstance(content, str) else path.write_bytes(content)
    return apply


def in_description_folder(make):
    def apply(root, name, split):
        make(descriptions(root, split), name)
    return apply


def directory_as_file(folder, name):
    (folder / f"{name}.json").unlink()
    (folder / f"{name}.json").mkdir()


def upper_case_suffix(folder, name):
    (folder / f"{name}.json").rename(folder / f"{name}.JSON")


def symlink_loop(folder, name):
    os.symlink("loop_b.json", folder / "loop_a.json")
    os.symlink("loop_a.json", folder / "loop_b.json")


def unknown_sample(folder, name):
    (folder / "S999999_P0000_T99.json").write_text(json.dumps({"0": "left hand moves up"}))


def flat_conflicts_with_split(folder, name):
    (folder.parent.parent / f"{name}.json").write_text(json.dumps({"0": "left hand moves up"}))


def empty_label_file(root, name, split):
    write_labels(root, split, {})


@dataclass
class World:
    """One problem and what it must lead to. `data` / `checklist`: (kind, text the reason must contain)."""
    id: str
    breaks: object
    data: tuple
    checklist: tuple  # (check name, status, text)
    counts: dict = field(default_factory=dict)


WORLDS = [
    World("empty label file", empty_label_file, ("error", "holds no samples"),
          ("labels train", "fail", "holds no samples")),
    World("text None", edit_label("text", None), ("rejected", "'text' is None"),
          ("label entries train", "warn", "'text' is None")),
    World("video_path None", edit_label("video_path", None), ("rejected", "'video_path' is None"),
          ("label entries train", "warn", "'video_path' is None")),
    World("empty target", edit_label("text", "  "), ("warning", "empty target sentence"),
          ("label targets train", "warn", "empty target sentence")),
    World("start is a string", edit_pose(lambda d: d.update(start="abc")), ("skip", "'start' is 'abc'"),
          ("pose files train", "warn", "'start' is 'abc'")),
    World("all-NaN pose", edit_pose(all_keypoints(np.nan)), ("skip", "no usable keypoint"),
          ("pose files train", "warn", "no usable keypoint")),
    World("zero-confidence pose", edit_pose(zero_scores), ("skip", "no usable keypoint"),
          ("pose files train", "warn", "no usable keypoint")),
    World("some NaN keypoints", edit_pose(some_nan), ("warning", "NaN/inf (treated as undetected)"),
          ("pose files train", "warn", "NaN/inf")),
    World("description nested 100,000 deep", write_description("[" * 100_000 + "]" * 100_000),
          ("undescribed", "nested too deeply"), ("description files", "warn", "nested too deeply")),
    World("segment bomb [0, 10000000]", write_description('[{"start": 0, "end": 10000000, "text": "x"}]'),
          ("warning", "beyond the clip"), ("description files", "warn", "beyond the clip")),
    World("keys far beyond the clip", write_description(json.dumps({"5000": "left hand moves up"})),
          ("warning", "frames 5000…5000, beyond the clip"), ("description files", "warn", "beyond the clip")),
    World("pose file over 1 GiB", oversized(lambda root, split: root / POSES, ".pkl", 1 << 30),
          ("skip", "more than the 1024 MiB"), ("pose files train", "warn", "more than the 1024 MiB")),
    World("description file over 16 MiB", oversized(descriptions, ".json", 16 << 20),
          ("undescribed", "more than the 16 MiB"),
          ("description files", "warn", "more than the 16 MiB")),
    World("not UTF-8", write_description(b"\xff\xfe{"), ("undescribed", "not UTF-8"),
          ("description files", "warn", "not UTF-8")),
    World("directory named .json", in_description_folder(directory_as_file), ("setup", "not a file, ignored"),
          ("description layout", "warn", "not a file, ignored")),
    World(".JSON suffix", in_description_folder(upper_case_suffix), ("setup", "lower-case .json"),
          ("description layout", "warn", "lower-case .json")),
    World("symlink loop", in_description_folder(symlink_loop), ("setup", "loop_a.json: unreadable"),
          ("description layout", "warn", "loop_a.json: unreadable")),
    World("description of no sample", in_description_folder(unknown_sample), ("setup", "S999999_P0000_T99"),
          ("description layout", "warn", "S999999_P0000_T99")),
    World("flat file conflicts with split_data", in_description_folder(flat_conflicts_with_split),
          ("setup", "in several folders"), ("description layout", "warn", "in several folders")),
]


def victim(root, split):
    """The sample every world breaks: the split's first that has a description file."""
    return next(n for n in sorted(read_labels(root, split)) if (descriptions(root, split) / f"{n}.json").exists())


@pytest.fixture
def broken(request, mini_world, tmp_path, monkeypatch):
    """A copy of the mini-world (the mT5 folder linked, not copied) with the row's problem planted in a split.
    → (World, split, name of the sample broken, labelled names before the break)."""
    world, split = request.param
    root = tmp_path / "world"
    for part in ("data", "dataset", "description"):
        shutil.copytree(mini_world / part, root / part, symlinks=True)
    (root / "pretrained_weight").symlink_to(mini_world / "pretrained_weight")
    name, labelled = victim(root, split), set(read_labels(root, split))
    world.breaks(root, name, split)
    monkeypatch.setenv("UNISIGN_ROOT", str(root))
    importlib.reload(config)
    yield world, split, name, labelled
    monkeypatch.delenv("UNISIGN_ROOT")
    importlib.reload(config)


def run_epoch(dataset):
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=dataset.collate_fn)
    seen, skipped, warnings, undescribed = set(), {}, [], []
    for src, _ in loader:
        seen.update(src["name_batch"])
        skipped.update((s.name, s.reason) for s in src["skipped"])
        warnings += [(w.name, w.reason) for w in src["warnings"]]
        undescribed += src["desc_problems"]
    return seen, skipped, warnings, undescribed


@pytest.mark.parametrize("broken", [(w, split) for split in ("train", "dev") for w in WORLDS],
                         ids=[f"{split}: {w.id}" for split in ("train", "dev") for w in WORLDS], indirect=True)
def test_data_path(broken):
    """Training (a skipped sample is replaced by the next) and evaluation (it is dropped) see the same classes."""
    world, split, victim, labelled = broken
    kind, text = world.data
    args = parse_args("--use_descriptions", "--max_length", "256")
    labels_path = {"train": config.train_label_paths, "dev": config.dev_label_paths}[split]["CSL_Daily"]
    if kind == "error":
        with pytest.raises(LabelFileError, match=text):
            S2T_Dataset(labels_path, args, split)
        return
    dataset = S2T_Dataset(labels_path, args, split)
    seen, skipped, warnings, undescribed = run_epoch(dataset)
    # Nothing lost: every labelled sample is used, rejected at start, or skipped while loading.
    assert seen | set(skipped) | set(dataset.rejected) == labelled
    assert not (seen & set(skipped)) and not (seen & set(dataset.rejected))
    expected = {"rejected": ({victim}, set(), 0, 0), "skip": (set(), {victim}, 0, 0),
                "warning": (set(), set(), 1, 0), "undescribed": (set(), set(), 0, 1), "setup": (set(), set(), 0, 0)}
    rejected, skips, n_warnings, n_undescribed = expected[kind]
    assert set(dataset.rejected) == rejected and set(skipped) == skips
    assert len(warnings) == n_warnings and len(undescribed) == n_undescribed, (warnings, undescribed)
    reasons = {"rejected": dataset.rejected.values(), "skip": skipped.values(),
               "warning": [r for n, r in warnings if n == victim], "undescribed": [r for _, r in undescribed],
               "setup": dataset.setup_warnings}[kind]
    assert any(text in r for r in reasons), reasons
    if kind != "setup":
        assert dataset.setup_warnings == []


def count(detail, pattern):
    """The number a check's detail gives by `pattern` (one group), 0 when the check or the number is absent."""
    found = re.search(pattern, detail or "")
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("broken", [(w, "train") for w in WORLDS], ids=[w.id for w in WORLDS], indirect=True)
def test_checklist(broken, capsys, tmp_path):
    world, split, _, labelled = broken
    name, status, text = world.checklist
    code = pre_training_checklist.main(["--dataset", "CSL_Daily", "--json", "--use_descriptions",
                                        "--feature_cache_dir", str(tmp_path / "cache")])
    report = json.loads(capsys.readouterr().out)  # always valid JSON
    flagged = [c for c in report["checks"] if c["name"] == name]
    assert flagged and flagged[0]["status"] == status and text in flagged[0]["detail"], flagged
    assert all("crashed" not in c["detail"] for c in report["checks"])
    assert code == (1 if status == "fail" else 0)
    if world.id == "empty label file":  # the real cause, not missing poses
        assert not [c for c in report["checks"] if c["name"] == "poses train"]
        return
    # The counts: nothing lost (usable entries + unusable entries = labelled; every usable sample's pose file
    # is loaded, at most 50 of them), and exactly the one problem planted is counted, under its own check.
    details = {c["name"]: c["detail"] for c in report["checks"]}
    kind = world.data[0]
    usable = count(details["labels train"], r": (\d+) samples$")
    assert usable + count(details.get("label entries train"), r"^(\d+) unusable entries") == len(labelled)
    assert count(details.get("label entries train"), r"^(\d+) unusable") == (kind == "rejected")
    assert count(details["pose files train"], r"(\d+) pose files loaded") == usable <= 50
    assert count(details["pose files train"], r", (\d+) are unusable") == (kind == "skip")
    assert count(details["pose files train"], r"; (\d+) have NaN/inf") == (world.id == "some NaN keypoints")
    assert count(details.get("label targets train"), r"^(\d+) suspicious") == (name == "label targets train")
    assert count(details.get("description files"), r"^(\d+) files with problems") == (name == "description files")
    assert ("description layout" in details) == (name == "description layout"), details.get("description layout")


# Full runs (real DeepSpeed, 1 rank, CPU) on a 4-samples-per-split world: the counts reach the run's report.

@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    from uni_sign_ext.fixture import build_mini_world

    return build_mini_world(tmp_path_factory.mktemp("small_world"), samples_per_split=4, seed=0)


def run_fine_tuning(world, *flags):
    env = dict(os.environ, UNISIGN_ROOT=str(world), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    return subprocess.run([sys.executable, str(REPO / "fine_tuning.py"), "--dataset", "CSL_Daily",
                           "--gradient-accumulation-steps", "1", "--num_workers", "0", "--dtype", "fp32",
                           "--max_length", "8", *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("split", ["dev", "train"], ids=["--eval", "training"])
def test_runs_count_every_class_and_lose_nothing(small_world, tmp_path, split):
    """One sample of each class in a split of 4: `--eval` (dev) or one training epoch (train) reports each
    counted once; nothing is lost."""
    root = tmp_path / "world"
    shutil.copytree(small_world, root, symlinks=True)
    names = sorted(read_labels(root, split))
    assert len(names) == 4
    edit_label("text", None)(root, names[0], split)                                      # rejected at start
    edit_pose(lambda d: d.update(start="abc"))(root, names[1], split)                   # skipped
    write_description("[" * 100_000 + "]" * 100_000)(root, names[2], split)             # undescribed
    write_description(json.dumps({"5000": "left hand moves up"}))(root, names[3], split)  # warning
    out = tmp_path / "run"
    # Training: 3 usable samples fill one batch of 3 (the skipped one replaced by the next, as upstream).
    run = ["--eval", "--batch-size", "4"] if split == "dev" else ["--epochs", "1", "--batch-size", "3"]
    proc = run_fine_tuning(root, *run, "--use_descriptions", "--feature_cache_dir", "", "--output_dir", str(out))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "1 unusable label entries skipped" in log and "'text' is None" in log
    report = "dev evaluation" if split == "dev" else "epoch 0"
    assert (f"{report}: 1 samples skipped for unusable pose files, 1 malformed description files, "
            "1 warnings about usable samples") in log
    if split == "dev":
        translated = [line.split(",")[0] for line in (out / "dev_tmp_pres.txt").read_text().splitlines()]
        assert translated == [f"sample: {n}" for n in names[2:]]  # 4 = 2 + 1 + 1
    else:
        record = json.loads((out / "log.txt").read_text())
        assert record["train_skipped_pose_files"] == 1 and record["train_steps"] == 1


def gating_checkpoint(root, tmp_path):
    """A checkpoint holding gating fusion weights (the rest does not matter: the fusion is checked first)."""
    from uni_sign_ext.fusion import DescriptionFusion

    path = tmp_path / "gating.pth"
    state = {f"text_fusion.{k}": v for k, v in DescriptionFusion(8, 8, "gating").state_dict().items()}
    torch.save({"model": state}, path)
    return ["--eval", "--use_descriptions", "--text_fusion_type", "cross_attn", "--finetune", str(path)]


def nan_feature_cache(root, tmp_path):
    from uni_sign_ext.feature_cache import FORMAT, _d_model, cache_path, encoder_fingerprint

    mt5 = root / "pretrained_weight" / "mt5-base"
    fingerprint = encoder_fingerprint(mt5)
    path = cache_path(tmp_path / "cache", "CSL_Daily", mt5, fingerprint)
    path.parent.mkdir()
    torch.save({"format": FORMAT, "encoder_path": str(mt5), "fingerprint": fingerprint, "d_model": _d_model(mt5),
                "texts": ["left hand moves up"], "features": torch.full((1, _d_model(mt5)), float("nan"))}, path)
    return ["--use_descriptions", "--feature_cache_dir", str(path.parent)]


def output_dir_is_a_file(root, tmp_path):
    (tmp_path / "a_file").write_text("x")
    return ["--output_dir", str(tmp_path / "a_file" / "run")]


def empty_train_labels(root, tmp_path):
    write_labels(root, "train", {})
    return []


# Start-up user errors of a whole run: (id, flags or a function (world, tmp_path) → flags, text of the one line).
USER_ERRORS = [
    ("--max_length 0", ["--max_length", "0"], "--max_length 0: must be at least 1"),
    ("--max_length -1", ["--max_length", "-1"], "--max_length -1: must be at least 1"),
    ("--gradient-accumulation-steps 0", ["--gradient-accumulation-steps", "0"],
     "--gradient-accumulation-steps 0: must be at least 1"),
    ("empty label file", empty_train_labels, "labels.train: no usable train sample: it holds no samples"),
    ("gating checkpoint, --text_fusion_type cross_attn", gating_checkpoint,
     "holds gating fusion weights, which do not fit --text_fusion_type cross_attn: pass --text_fusion_type gating"),
    ("NaN features in the cache", nan_feature_cache, "1 texts have NaN/inf features"),
    ("--output_dir under a file", output_dir_is_a_file, "--output_dir"),
]


@pytest.mark.parametrize("flags, text", [case[1:] for case in USER_ERRORS], ids=[case[0] for case in USER_ERRORS])
def test_user_errors_stop_a_run_before_training_with_one_line(small_world, tmp_path, flags, text):
    root = tmp_path / "world"
    shutil.copytree(small_world, root, symlinks=True)
    flags = flags(root, tmp_path) if callable(flags) else flags
    proc = run_fine_tuning(root, "--epochs", "1", "--batch-size", "2", *flags)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert text in lines[-1], lines[-3:]  # the last line names the file or flag, what is wrong and the fix
    assert "epoch 0 [" not in proc.stdout and "model:" not in proc.stdout  # before any training (or engine)


def test_a_nan_loss_run_stops_naming_the_step_and_samples(small_world, tmp_path):
    """A full DeepSpeed run (1 rank, CPU): lr 1e30 makes step 2's loss NaN; the run stops there, before any
    update, with one line and no checkpoint."""
    out = tmp_path / "run"
    proc = run_fine_tuning(small_world, "--batch-size", "2", "--epochs", "1", "--lr", "1e30", "--output_dir", str(out))
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: epoch 0 step 2: the training loss is nan")
    assert "no checkpoint was saved yet" in errors[0] and "S0" in errors[0]
    assert not list(out.glob("*.pth"))

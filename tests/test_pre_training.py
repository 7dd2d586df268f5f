"""pre_training.py (stage 1 on CSL-News): the data equals upstream's S2T_Dataset_news, bad samples are
replaced and counted, --quick_break caps each epoch, and its checkpoints start fine_tuning.py.

The upstream comparisons are skipped (with the reason) when no upstream checkout is found; see tests/upstream.py.
"""
import gzip
import importlib
import json
import pickle
import re
import shutil

import pytest
import torch

from conftest import REPO, parse_args
from test_deepspeed import deepspeed_run
from upstream import load_upstream, point_at, require_upstream, seeded_items, upstream_args

PARTS = ("body", "left", "right", "face_all")
NEWS_LABELS = ("data", "CSL_News", "CSL_News_Labels.json")
MAX_LENGTH = 24  # below most mini-world clips, so training frames are sampled at random


def news_items(root):
    return json.loads(root.joinpath(*NEWS_LABELS).read_text(encoding="utf-8"))


def our_dataset(root, phase, *flags):
    import config
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNISIGN_ROOT", str(root))
        importlib.reload(config)
        dataset = datasets.make_dataset(str(root.joinpath(*NEWS_LABELS)), parse_args("--dataset", "CSL_News", *flags),
                                        phase)
    importlib.reload(config)
    return dataset


@pytest.fixture(scope="module")
def up(mini_world):
    require_upstream()
    up = load_upstream()
    point_at(up, mini_world / "pretrained_weight" / "mt5-base",
             {"CSL_News": str(mini_world / "dataset" / "CSL_News" / "pose_format")})
    return up


def their_dataset(up, path, phase, max_length=MAX_LENGTH):
    return up.datasets.S2T_Dataset_news(path=str(path), args=upstream_args(up, dataset="CSL_News",
                                                                           max_length=max_length), phase=phase)


# ---------------------------------------------------------------- data


def test_mini_world_has_csl_news(mini_world):
    items = news_items(mini_world)
    assert len(items) == 36 and all(set(item) == {"video", "pose", "text"} for item in items)
    assert all((mini_world / "dataset" / "CSL_News" / "pose_format" / item["pose"]).is_file() for item in items)
    assert len(our_dataset(mini_world, "train")) == 35 and len(our_dataset(mini_world, "dev")) == 1


@pytest.mark.parametrize("total", [1, 36, 99, 100, 101, 150, 199, 250, 1234])
def test_split_boundary_equals_upstreams(up, tmp_path, total):
    """The 99 %/1 % cut, on lists whose 99 % is not a whole number (int() truncates; round() would not)."""
    from uni_sign_ext.labels import csl_news_bounds

    path = tmp_path / "labels.json"
    path.write_text(json.dumps([{"video": f"v{i}.mp4", "pose": f"v{i}.pkl", "text": "x"} for i in range(total)]))
    for phase in ("train", "dev", "test"):
        theirs = their_dataset(up, path, phase)
        assert csl_news_bounds(total, phase) == (theirs.start_idx, theirs.end_idx), phase


@pytest.mark.parametrize("phase", ["train", "dev"])
def test_items_and_seeded_sampling_equal_upstreams(up, mini_world, phase):
    """Names, texts and poses of every item; training samples long clips' frames from the same stream.

    Evaluation draws its frames from a stream seeded per sample (the fork's rule, see S2T_Dataset), so the
    dev part is compared with clips kept whole."""
    max_length = MAX_LENGTH if phase == "train" else 1000
    ours = our_dataset(mini_world, phase, "--max_length", str(max_length))
    theirs = their_dataset(up, mini_world.joinpath(*NEWS_LABELS), phase, max_length)
    assert (ours.start_idx, ours.end_idx) == (theirs.start_idx, theirs.end_idx)
    assert ours.names == [item["video"] for item in theirs.annotation[theirs.start_idx:theirs.end_idx]]
    indices = list(range(len(theirs)))
    mine, upstream_items = seeded_items(ours, indices, 7), seeded_items(theirs, indices, 7)
    sampled = 0
    for a, b in zip(mine, upstream_items):
        assert (a[0], a[2], a[3], a[4]) == (b[0], b[2], "", b[4])  # upstream's gloss is its retry counter
        for part in PARTS:
            assert a[1][part].dtype == b[1][part].dtype, part
            assert torch.equal(a[1][part], b[1][part]), (a[0], part)
        sampled += len(b[1]["body"]) == max_length
    assert sampled >= 3 if phase == "train" else sampled == 0


def break_pose_files(root, poses):
    """Make each pose file unusable in its own way: missing, truncated, not keypoints."""
    folder = root / "dataset" / "CSL_News" / "pose_format"
    ways = [lambda p: p.unlink(), lambda p: p.write_bytes(p.read_bytes()[:50]),
            lambda p: p.write_bytes(pickle.dumps([1, 2, 3]))]
    for i, pose in enumerate(poses):
        ways[i % len(ways)](folder / pose)


def news_copy(mini_world, root, count=None):
    """A root holding (the first `count` items of) the mini-world's CSL-News, poses copied (free to break)."""
    items = news_items(mini_world)[:count]
    root.joinpath(*NEWS_LABELS).parent.mkdir(parents=True)
    root.joinpath(*NEWS_LABELS).write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    folder = root / "dataset" / "CSL_News" / "pose_format"
    folder.mkdir(parents=True)
    for item in items:
        shutil.copy(mini_world / "dataset" / "CSL_News" / "pose_format" / item["pose"], folder / item["pose"])
    (root / "pretrained_weight").symlink_to(mini_world / "pretrained_weight")
    return items


def test_a_bad_training_sample_is_replaced_like_upstream_and_counted(up, mini_world, tmp_path):
    from datasets import Flagged

    items = news_copy(mini_world, tmp_path)
    break_pose_files(tmp_path, [items[4]["pose"]])
    ours = our_dataset(tmp_path, "train", "--max_length", str(MAX_LENGTH))
    point_at(up, mini_world / "pretrained_weight" / "mt5-base",
             {"CSL_News": str(tmp_path / "dataset" / "CSL_News" / "pose_format")})
    try:
        theirs = their_dataset(up, tmp_path.joinpath(*NEWS_LABELS), "train")
        (flagged,), (replacement,) = seeded_items(ours, [4], 3), seeded_items(theirs, [4], 3)
    finally:
        point_at(up, mini_world / "pretrained_weight" / "mt5-base",
                 {"CSL_News": str(mini_world / "dataset" / "CSL_News" / "pose_format")})
    assert isinstance(flagged, Flagged)  # replaced by the same random sample as upstream...
    assert flagged.item[0] == replacement[0] != items[4]["video"]
    assert all(torch.equal(flagged.item[1][p], replacement[1][p]) for p in PARTS)
    assert [(s.name, s.reason) for s in flagged.skipped] == [(items[4]["video"], "pose file not found")]
    src, _ = ours.collate_fn([flagged, ours[0]])  # ...and the skip travels with the batch, to be counted
    assert [s.name for s in src["skipped"]] == [items[4]["video"]] and len(src["name_batch"]) == 2


def test_bad_samples_in_a_row_stop_after_upstreams_ten_attempts(mini_world, tmp_path):
    items = news_copy(mini_world, tmp_path, count=5)  # 4 train samples, all broken
    break_pose_files(tmp_path, [item["pose"] for item in items[:4]])
    with pytest.raises(RuntimeError, match="10 CSL-News samples in a row had unusable pose files"):
        our_dataset(tmp_path, "train")[0]


def test_a_bad_evaluation_sample_is_skipped_and_counted(mini_world, tmp_path):
    from datasets import SkippedSample

    items = news_copy(mini_world, tmp_path, count=10)
    bad = items[9]  # 10 items: 9 train, 1 dev
    (tmp_path / "dataset" / "CSL_News" / "pose_format" / bad["pose"]).write_bytes(b"not a pickle")
    dev = our_dataset(tmp_path, "dev")
    assert isinstance(dev[0], SkippedSample) and dev[0].name == bad["video"]
    assert [s.name for s in dev.collate_fn([dev[0]])[0]["skipped"]] == [bad["video"]]


@pytest.mark.parametrize("flags,message", [
    (["--dataset", "CSL_Daily"], "pre-trains on CSL_News"),
    (["--task", "CSLR"], "--task CSLR is a fine-tuning task"),
    (["--use_descriptions"], "pre-training has no descriptions"),
])
def test_unsupported_pretraining_flags_fail_clearly(flags, message):
    from uni_sign_ext.cli import check_pretraining_args

    argv = ["--dataset", "CSL_News", *flags]
    with pytest.raises(SystemExit, match=message):
        check_pretraining_args(parse_args(*argv))


def test_upstreams_stage_scripts_parse(up):
    """train_stage1.sh's and train_stage2.sh's flags parse and pass pre_training.py's checks."""
    from uni_sign_ext.cli import check_pretraining_args

    for script in ("train_stage1.sh", "train_stage2.sh"):
        text = (up.path / "script" / script).read_text().replace("\\\n", " ")
        argv = re.search(r"pre_training\.py (.*)", text).group(1).replace("$output_dir", "out").replace(
            "$ckpt_path", "best.pth").split()
        args = parse_args(*argv)
        assert (args.dataset, args.quick_break, args.lr) == ("CSL_News", 2048, 3e-4)
        assert args.rgb_support == (script == "train_stage2.sh")
        check_pretraining_args(args)


# ---------------------------------------------------------------- a real run


def subset_labels(src, dst, count):
    with gzip.open(src, "rb") as f:
        labels = pickle.load(f)
    from uni_sign_ext.fixture import write_labels

    write_labels(dst, dict(list(labels.items())[:count]))


def test_pretraining_run_checkpoints_start_fine_tuning(mini_world, tmp_path):
    """2 epochs of --quick_break 2 (the split has 4 batches) with bad training samples; then fine_tuning.py
    --use_descriptions starts from its best_checkpoint.pth, only the fusion fresh."""
    root = tmp_path / "root"
    items = news_copy(mini_world, root, count=20)  # 19 train (9 batches of 2), 1 dev/test
    bad = [items[i] for i in (0, 3, 5, 8, 11, 14)]
    break_pose_files(root, [item["pose"] for item in bad])
    for sub in ("dataset/CSL_Daily", "description/CSL_Daily"):
        (root / sub).parent.mkdir(parents=True, exist_ok=True)
        (root / sub).symlink_to(mini_world / sub)
    for split, count in (("train", 2), ("dev", 1), ("test", 1)):  # fine-tuning: one step, two evaluations
        subset_labels(mini_world / "data" / "CSL_Daily" / f"labels.{split}",
                      root / "data" / "CSL_Daily" / f"labels.{split}", count)

    out = tmp_path / "stage1"
    common = ["--batch-size", "2", "--gradient-accumulation-steps", "1", "--num_workers", "0", "--seed", "0",
              "--dtype", "fp32", "--max_length", "16"]
    log = deepspeed_run(1, REPO / "pre_training.py", common + ["--dataset", "CSL_News", "--epochs", "2",
                                                               "--quick_break", "2", "--output_dir", str(out)], root)
    for epoch in (0, 1):
        assert f"epoch {epoch} [2/2] loss" in log, log[-3000:]
    assert not re.search(r"epoch \d \[[3-9]/", log)
    records = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert [r["train_steps"] for r in records] == [2, 2]
    skipped = sum(r["train_skipped_pose_files"] for r in records)
    assert skipped >= 1, records  # bad samples were met, replaced, and counted...
    assert re.search(r"epoch \d: [1-9]\d* samples skipped for unusable pose files", log), log[-3000:]
    assert "skipped " in log and any(item["video"] in log for item in bad)  # ...and named
    for name in ("checkpoint_0.pth", "checkpoint_1.pth", "best_checkpoint.pth"):
        saved = torch.load(out / name, map_location="cpu", weights_only=True)
        assert set(saved) == {"model", "args", "epoch"}, name
        assert saved["args"]["dataset"] == "CSL_News" and saved["args"]["quick_break"] == 2
    assert "BLEU-4" in log

    best = out / "best_checkpoint.pth"
    log = deepspeed_run(1, REPO / "fine_tuning.py", common + [
        "--dataset", "CSL_Daily", "--finetune", str(best), "--use_descriptions", "--feature_cache_dir", "",
        "--epochs", "1", "--quick_break", "1", "--output_dir", str(tmp_path / "stage3")], root)
    assert f"loaded {best}" in log
    assert re.search(r"has no description-fusion weights: \d+ text_fusion\.\* keys start fresh", log), log[-3000:]
    assert "epoch 0 [1/1] loss" in log


def test_pretrained_checkpoint_loads_strictly_without_descriptions(mini_world, tmp_path):
    """Without --use_descriptions nothing is missing; with it, exactly the text_fusion.* keys."""
    from models import Uni_Sign
    from uni_sign_ext.checkpoint import checkpoint_record, load_model_checkpoint

    mt5 = str(mini_world / "pretrained_weight" / "mt5-base")
    args = parse_args("--dataset", "CSL_News", "--mt5_path", mt5)
    torch.manual_seed(0)
    path = tmp_path / "stage1.pth"
    torch.save(checkpoint_record(Uni_Sign(args).state_dict(), args, 0), path)
    assert load_model_checkpoint(Uni_Sign(parse_args("--dataset", "CSL_Daily", "--mt5_path", mt5)), str(path)) == []
    fused = Uni_Sign(parse_args("--dataset", "CSL_Daily", "--mt5_path", mt5, "--use_descriptions"))
    missing = load_model_checkpoint(fused, str(path))
    assert missing and set(missing) == {k for k in fused.state_dict() if k.startswith("text_fusion.")}


def test_an_empty_sentence_is_a_counted_warning_and_cslr_is_refused(mini_world, tmp_path):
    from datasets import Flagged

    items = news_copy(mini_world, tmp_path, count=10)
    items[2]["text"] = " "
    tmp_path.joinpath(*NEWS_LABELS).write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    flagged = our_dataset(tmp_path, "train")[2]
    assert isinstance(flagged, Flagged) and flagged.item[2] == " "  # kept, as upstream, and counted
    assert [(w.name, w.reason) for w in flagged.warnings] == [(items[2]["video"], "empty target sentence")]
    with pytest.raises(SystemExit, match="CSL-News has sentences, no glosses"):
        our_dataset(tmp_path, "train", "--task", "CSLR")


def test_checklist_labels_name_the_pose_files_the_dataset_loads(mini_world, tmp_path):
    """pre_training_checklist.py reads CSL-News through labels.load_labels: its pose files are the items' `pose`,
    even where they sit in a subfolder under another stem than the video's."""
    from datasets import pose_file_name
    from uni_sign_ext.labels import load_labels

    items = news_copy(mini_world, tmp_path, count=10)
    folder = tmp_path / "dataset" / "CSL_News" / "pose_format"
    (folder / "clips").mkdir()
    for i, item in enumerate(items):
        (folder / item["pose"]).rename(folder / "clips" / f"p{i}.pkl")
        item["pose"] = f"clips/p{i}.pkl"
    tmp_path.joinpath(*NEWS_LABELS).write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    entries = load_labels(str(tmp_path.joinpath(*NEWS_LABELS)), "CSL_News", "train").entries
    assert sorted(pose_file_name(e["video_path"]) for e in entries.values()) == sorted(i["pose"] for i in items[:9])
    dataset = our_dataset(tmp_path, "train")
    assert all(isinstance(dataset[i], tuple) for i in range(len(dataset)))  # every one loads: none replaced


def test_stage_two_starts_from_stage_one_and_starts_stage_three(rgb_world, tmp_path):
    """train_stage2.sh's chain on the video world: stage 1 (pose-only), stage 2 (--rgb_support --finetune stage
    1: the RGB modules start fresh, the backbone from --rgb_backbone_weights), then fine_tuning.py --rgb_support
    --use_descriptions from stage 2 with only the fusion fresh."""
    from uni_sign_ext.fixture_video import BACKBONE_WEIGHTS

    common = ["--batch-size", "2", "--gradient-accumulation-steps", "1", "--num_workers", "0", "--seed", "0",
              "--dtype", "fp32", "--max_length", "16", "--epochs", "1", "--quick_break", "1"]
    news = common + ["--dataset", "CSL_News"]
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    deepspeed_run(1, REPO / "pre_training.py", news + ["--output_dir", str(stage1)], rgb_world)
    log = deepspeed_run(1, REPO / "pre_training.py", news + [
        "--rgb_support", "--finetune", str(stage1 / "best_checkpoint.pth"), "--rgb_backbone_weights",
        str(rgb_world / BACKBONE_WEIGHTS), "--output_dir", str(stage2)], rgb_world)
    assert re.search(r"is a pose-only checkpoint: 33\d RGB-pose keys start fresh", log), log[-3000:]
    assert "epoch 0 [1/1] loss" in log
    saved = torch.load(stage2 / "best_checkpoint.pth", map_location="cpu", weights_only=True)
    assert saved["args"]["rgb_support"] and any(k.startswith("fusion_gate.") for k in saved["model"])
    log = deepspeed_run(1, REPO / "fine_tuning.py", common + [
        "--dataset", "CSL_Daily", "--rgb_support", "--finetune", str(stage2 / "best_checkpoint.pth"),
        "--use_descriptions", "--feature_cache_dir", "", "--output_dir", str(tmp_path / "stage3")], rgb_world)
    assert re.search(r"has no description-fusion weights: \d+ text_fusion\.\* keys start fresh", log), log[-3000:]
    assert "RGB-pose keys start fresh" not in log and "RGB backbone weights from" not in log

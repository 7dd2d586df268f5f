"""Whole fine_tuning.py runs: --resume after a kill (1 and 2 ranks) or from a truncated checkpoint, evaluation sharded
over 2 gloo ranks equal to 1 rank, and skip counts equal to the bad files planted (issue 14, item 1)."""
import gzip
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_bad_inputs import break_poses, pose_path
from test_deepspeed import COMMON, FP32, REPO, deepspeed_command, deepspeed_run, free_port, world_env

RUN = COMMON + FP32 + ["--use_descriptions", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eight samples per split: two batches of 4 per epoch."""
    from uni_sign_ext.fixture import build_mini_world

    return build_mini_world(tmp_path_factory.mktemp("runs_world"), samples_per_split=8, seed=0)


def python_run(root, flags):
    """fine_tuning.py under plain python (rank 0 of 1); returns the Popen."""
    env = world_env(root)
    env.pop("RANK", None)
    return subprocess.Popen([sys.executable, str(REPO / "fine_tuning.py"), *flags], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_first_epoch(proc, output_dir, kill):
    """Wait until the run has left its epoch-0 resume checkpoint, then kill it (`kill()`) mid epoch 1."""
    while not (output_dir / "resume" / "latest").is_file() and proc.poll() is None:
        time.sleep(0.02)
    kill()
    proc.communicate()
    assert sorted(p.name for p in (output_dir / "resume").glob("epoch_*")) == ["epoch_0"], "killed too late"


def finish(proc):
    output = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, output[-6000:]
    return output


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_run(a, b):
    """Identical final weights, predictions and per-epoch records (seconds aside)."""
    wa, wb = weights(a / "checkpoint_1.pth"), weights(b / "checkpoint_1.pth")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:5]
    for name in ("dev_tmp_pres.txt", "test_tmp_pres.txt"):
        assert (a / name).read_text() == (b / name).read_text(), name
    timeless = [[{k: v for k, v in json.loads(line).items() if "seconds" not in k}
                 for line in (run / "log.txt").read_text().splitlines()] for run in (a, b)]
    assert [r["epoch"] for r in timeless[1]] == [0, 1]
    assert timeless[0] == timeless[1]


def test_resume_after_kill_and_from_truncated_checkpoint(world, tmp_path):
    cache = ["--feature_cache_dir", str(tmp_path / "cache")]  # shared: every run sees the same text features
    straight = tmp_path / "straight"
    output = finish(python_run(world, RUN + cache + ["--epochs", "2", "--output_dir", str(straight)]))
    # The withheld-descriptions ablation costs a second beam search: final test only, not every epoch.
    assert "[test, descriptions withheld]" in output and "[dev, descriptions withheld]" not in output
    records = [json.loads(line) for line in (straight / "log.txt").read_text().splitlines()]
    assert not any("withheld" in key for key in records[0])
    # log.txt: upstream's keys (its train_* and test_* = the dev split's metrics), then ours; curves.png beside it.
    upstream = {"train_loss", "train_lr", "test_loss", "test_bleu1", "test_bleu2", "test_bleu3", "test_bleu4",
                "test_rouge", "epoch", "n_parameters"}
    ours = {"test_gate_described", "test_gate_undescribed", "train_skipped_pose_files", "train_steps",
            "test_skipped_pose_files", "dev_seconds", "seconds"}
    assert [r["epoch"] for r in records] == [0, 1] and all(set(r) == upstream | ours for r in records), records
    assert all(r["seconds"] > r["dev_seconds"] > 0 and 0 < r["test_gate_described"] < 1 for r in records)
    assert (straight / "curves.png").stat().st_size > 0

    killed = tmp_path / "killed"
    proc = python_run(world, RUN + cache + ["--epochs", "2", "--output_dir", str(killed)])
    kill_after_first_epoch(proc, killed, lambda: proc.send_signal(signal.SIGKILL))
    output = finish(python_run(world, RUN + cache + ["--epochs", "2", "--output_dir", str(killed), "--resume"]))
    assert f"--resume: continuing {killed} at epoch 1" in output
    assert_same_run(straight, killed)

    truncated = tmp_path / "truncated"
    shutil.copytree(straight, truncated)
    states = truncated / "resume" / "epoch_1" / "mp_rank_00_model_states.pt"
    states.write_bytes(states.read_bytes()[:1000])
    for name in ("checkpoint_1.pth", "dev_tmp_pres.txt", "test_tmp_pres.txt"):
        (truncated / name).unlink()  # the resumed run must write them again
    output = finish(python_run(world, RUN + cache + ["--epochs", "2", "--output_dir", str(truncated),
                                                     "--resume"]))
    assert re.search(r"WARNING .*checkpoint \S*truncated/resume/epoch_1 is unusable .*falling back to epoch_0",
                     output), output[-3000:]
    assert_same_run(straight, truncated)


def test_two_rank_resume_after_kill(world, tmp_path):
    """The same on 2 gloo ranks: the launcher and both ranks killed mid epoch 1, resumed → identical."""
    flags = RUN + ["--epochs", "2", "--feature_cache_dir", str(tmp_path / "cache")]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    deepspeed_run(2, REPO / "fine_tuning.py", flags + ["--output_dir", str(straight)], world)
    proc = subprocess.Popen(deepspeed_command(2, REPO / "fine_tuning.py", flags + ["--output_dir", str(killed)],
                                              free_port()), cwd=REPO, env=world_env(world), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_first_epoch(proc, killed, lambda: os.killpg(proc.pid, signal.SIGKILL))
    output = deepspeed_run(2, REPO / "fine_tuning.py", flags + ["--output_dir", str(killed), "--resume"], world)
    assert f"--resume: continuing {killed} at epoch 1" in output
    assert_same_run(straight, killed)


def plant_bad_poses(root):
    """Unusable pose files (unreadable, wrong keys, no frames, no usable frames) in every split; returns
    how many per split. (A missing file is reported at start-up instead, not counted as a skip.)"""
    planted = {}
    for split in ("train", "dev", "test"):
        with gzip.open(root / "data" / "CSL_Daily" / f"labels.{split}", "rb") as f:
            names = sorted(pickle.load(f))
        count = {"train": 3, "dev": 2, "test": 4}[split]
        break_poses(root, names[:5])
        for name in names[count:5]:  # keep only `count` of the five broken
            shutil.copy(pose_path(root, names[5]), pose_path(root, name))
        planted[split] = count
    return planted


def skip_line(output, what):
    counts = re.findall(rf"{what}: (\d+) samples skipped for unusable pose files", output)
    assert len(counts) == 1, (what, output[-3000:])  # printed once, by rank 0
    return int(counts[0])


def test_sharded_evaluation_equals_one_rank_and_counts_each_skip_once(tmp_path):
    from uni_sign_ext.fixture import build_mini_world

    root = build_mini_world(tmp_path / "world", samples_per_split=12, seed=0)
    planted = plant_bad_poses(root)
    # The 1-rank run goes first and fills the feature cache with every text; later runs only read it.
    flags = RUN + ["--epochs", "1", "--feature_cache_dir", str(tmp_path / "cache")]
    for ranks in (1, 2):
        out = tmp_path / f"train_{ranks}"
        run = flags + ["--output_dir", str(out)] + (["--ablation_every_epoch"] if ranks == 1 else [])
        output = finish(python_run(root, run)) if ranks == 1 else deepspeed_run(2, REPO / "fine_tuning.py", run, root)
        record = json.loads((out / "log.txt").read_text())
        assert record["train_skipped_pose_files"] == planted["train"]
        assert record["test_skipped_pose_files"] == planted["dev"]  # upstream's test_ keys hold the dev split
        assert skip_line(output, "epoch 0") == planted["train"]
        assert skip_line(output, "dev evaluation") == planted["dev"]
        assert skip_line(output, "test evaluation") == planted["test"]
        if ranks == 1:  # --ablation_every_epoch: the dev ablation is logged; no described frame is left
            assert record["test_withheld_gate_described"] is None and record["test_withheld_bleu4"] >= 0
            assert "[dev, descriptions withheld]" in output and "described n/a" in output

    # The 2-rank run evaluated sharded; one rank evaluating its final weights must print and write the same.
    sharded, sharded_output = out, output
    evaluated = tmp_path / "eval_1"
    output = finish(python_run(root, flags + ["--eval", "--finetune", str(sharded / "checkpoint_0.pth"),
                                              "--output_dir", str(evaluated)]))
    for name in ("dev_tmp_pres.txt", "test_tmp_pres.txt", "test_tmp_refs.txt"):
        lines = (evaluated / name).read_text().splitlines()
        assert lines == (sharded / name).read_text().splitlines(), name
        assert len(lines) == 12 - planted[name.split("_")[0]]
    results = [re.search(r"\[test\] (.*) \(", text).group(1) for text in (sharded_output, output)]
    assert results[0] == results[1] and "mean gate: described 0." in results[0]
    assert skip_line(output, "test evaluation") == planted["test"]

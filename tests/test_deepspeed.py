"""DeepSpeed for real on CPU (gloo): 1 and 2 ranks, ZeRO-2/3, bf16; training, checkpoints, --eval."""
import json
import re
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from utils import deepspeed_shm_buffer

REPO = Path(__file__).resolve().parents[1]
# bf16 on CPUs without native support is ~30x slower than fp32: bf16 runs use short clips.
COMMON = ["--dataset", "CSL_Daily", "--batch-size", "4", "--gradient-accumulation-steps", "1",
          "--num_workers", "0", "--seed", "0"]
BF16 = ["--dtype", "bf16", "--max_length", "12"]
FP32 = ["--dtype", "fp32", "--max_length", "32"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def deepspeed_command(ranks, script, flags, port):
    """The launcher's command line for `script` on `ranks` CPU ranks."""
    return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(ranks),
            "--master_port", port, str(script), *flags]


def world_env(root):
    return dict(os.environ, UNISIGN_ROOT=str(root), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def deepspeed_run(ranks, script, flags, root, timeout=900):
    """Launch `script` on `ranks` CPU ranks; it must succeed and leave none of DeepSpeed's shm buffers behind."""
    port = free_port()
    proc = subprocess.run(deepspeed_command(ranks, script, flags, port), cwd=REPO, env=world_env(root),
                          capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    leaked = [path for rank in range(ranks) if (path := deepspeed_shm_buffer(rank, "127.0.0.1", port)).exists()]
    assert not leaked, f"DeepSpeed's shared-memory buffers outlived the run: {leaked}"
    return output


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """Four samples per split: one batch per evaluation, so bf16 generation stays affordable."""
    from uni_sign_ext.fixture import build_mini_world

    return build_mini_world(tmp_path_factory.mktemp("small_world"), samples_per_split=4, seed=0)


def fixed_batch(ranks, zero, root, tmp_path, *extra):
    result = tmp_path / f"result_{ranks}_{zero}.json"
    deepspeed_run(ranks, REPO / "tests" / "ds_fixed_batch.py",
                  COMMON + ["--zero_stage", str(zero), "--steps", "5", "--lr", "3e-3",
                            "--result", str(result), *extra], root)
    return json.loads(result.read_text())


@pytest.mark.parametrize("ranks", [1, 2])
def test_zero2_bf16_training_lowers_loss_on_a_fixed_batch(mini_world, tmp_path, ranks):
    result = fixed_batch(ranks, 2, mini_world, tmp_path, *BF16)
    assert result["world_size"] == ranks
    assert result["optimizer_is_model_trainables"]
    losses = result["losses"]
    assert losses[-1] < losses[0] * 0.9, losses


@pytest.mark.parametrize("zero", [2, 3])
def test_descriptions_under_zero_two_ranks(mini_world, tmp_path, zero):
    result = fixed_batch(2, zero, mini_world, tmp_path, *FP32, "--use_descriptions", "--feature_cache_dir", "")
    assert result["losses"][-1] < result["losses"][0] * 0.9, result["losses"]
    assert result["optimizer_is_model_trainables"]
    assert not result["state_dict_has_encoder"]
    assert result["encoder_loaded"]  # no cache: the frozen encoder ran...
    assert not result["encoder_requires_grad"] and not result["encoder_grads"]  # ...and stayed frozen


def test_train_save_once_then_eval_reproduces_predictions(small_world, tmp_path):
    out = tmp_path / "train"
    small_batches = ["--batch-size", "2"]  # 4 samples on 2 ranks: one full batch each (the last partial one is dropped)
    log = deepspeed_run(2, REPO / "fine_tuning.py",
                        COMMON + BF16 + small_batches + ["--zero_stage", "2", "--epochs", "2", "--quick_break", "1",
                                                         "--output_dir", str(out)], small_world)
    for name in ["checkpoint_0.pth", "checkpoint_1.pth", "best_checkpoint.pth", "test_tmp_pres.txt",
                 "test_tmp_refs.txt", "dev_tmp_pres.txt"]:
        assert (out / name).is_file(), name
    dev_bleu4 = [json.loads(line)["test_bleu4"] for line in (out / "log.txt").read_text().splitlines()]
    best_epoch = dev_bleu4.index(max(dev_bleu4))  # the first best, as training keeps it
    last_epoch_files = [] if best_epoch == 1 else ["test_last_epoch_tmp_pres.txt", "test_last_epoch_tmp_refs.txt",
                                                   "test_last_epoch_metrics.json"]
    written = sorted(p.name for p in out.iterdir())  # nothing per rank, no temporary files left behind
    assert written == sorted(["checkpoint_0.pth", "checkpoint_1.pth", "best_checkpoint.pth", "dev_tmp_pres.txt",
                              "dev_tmp_refs.txt", "test_tmp_pres.txt", "test_tmp_refs.txt", "log.txt",
                              "curves.png", "resume", "dev_metrics.json", "test_metrics.json",
                              *last_epoch_files]), written
    assert "epoch 1 [1/1] loss" in log  # it trained
    assert "BLEU-4" in log and "ROUGE-L" in log
    for name, epoch in [("checkpoint_1.pth", 1), ("best_checkpoint.pth", best_epoch)]:
        saved = torch.load(out / name, map_location="cpu", weights_only=True)  # how it was made, beside 'model'
        assert (saved["epoch"], saved["args"]["batch_size"], saved["args"]["zero_stage"]) == (epoch, 2, 2), name

    # The final test reports the best-dev weights as [test]: --eval of best_checkpoint.pth reproduces it.
    evaluated = tmp_path / "eval"
    log = deepspeed_run(1, REPO / "fine_tuning.py",
                        COMMON + BF16 + small_batches + ["--eval", "--finetune", str(out / "best_checkpoint.pth"),
                                         "--output_dir", str(evaluated)], small_world)
    assert (evaluated / "test_tmp_pres.txt").read_text() == (out / "test_tmp_pres.txt").read_text()
    refs = (evaluated / "test_tmp_refs.txt").read_text().splitlines()
    assert refs and all(line.startswith("sample: ") and ", ground-truth: " in line for line in refs)
    assert (evaluated / "dev_tmp_pres.txt").is_file()


def test_plain_python_eval_with_descriptions_reports_gate_and_ablation(small_world, tmp_path):
    env = dict(os.environ, UNISIGN_ROOT=str(small_world), PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    proc = subprocess.run([sys.executable, str(REPO / "fine_tuning.py"), *COMMON, *FP32, "--use_descriptions",
                           "--eval", "--feature_cache_dir", str(tmp_path / "cache"), "--output_dir",
                           str(tmp_path / "eval")], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    for phase in ("dev", "test"):
        assert re.search(rf"\[{phase}\] BLEU-1 [\d.]+ BLEU-2 [\d.]+ BLEU-3 [\d.]+ BLEU-4 [\d.]+ ROUGE-L [\d.]+ "
                         r"\| mean gate: described 0\.1192, undescribed 0\.1192", log), log[-3000:]
        # Withheld: no frame is described any more, so nothing counts on the described side.
        assert re.search(rf"\[{phase}, descriptions withheld\] BLEU-1 .* \| mean gate: described n/a, "
                         r"undescribed 0\.1192", log), log[-3000:]
    assert list((tmp_path / "cache").glob("CSL_Daily__*.pt"))  # features cached for the next run

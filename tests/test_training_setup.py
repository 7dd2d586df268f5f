"""Training set-up as upstream does it: SyncBatchNorm decision, train sampler and full batches, LR schedule."""
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from conftest import parse_args
from uni_sign_ext.deepspeed_setup import sync_batchnorm, wants_sync_batchnorm


@pytest.mark.parametrize("distributed,device,expected", [
    (True, "cuda", True), (False, "cuda", False), (True, "cpu", False), (False, "cpu", False)])
def test_sync_batchnorm_only_for_several_cuda_ranks(distributed, device, expected):
    assert wants_sync_batchnorm(SimpleNamespace(distributed=distributed, device=torch.device(device))) is expected


def test_sync_batchnorm_conversion_keeps_keys_values_and_shared_hands(tiny_mt5):
    from models import Uni_Sign

    torch.manual_seed(0)
    model = Uni_Sign(parse_args("--mt5_path", tiny_mt5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cpu = SimpleNamespace(distributed=True, device=torch.device("cpu"))
    assert sync_batchnorm(model, cpu) is model
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())

    converted = sync_batchnorm(model, SimpleNamespace(distributed=True, device=torch.device("cuda")))
    kinds = [type(m) for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert kinds and set(kinds) == {torch.nn.SyncBatchNorm}
    after = converted.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert converted.gcn_modules["left"] is converted.gcn_modules["right"]


@pytest.mark.parametrize("device,dtype", [("cuda", "fp32"), ("cpu", "bf16")])
def test_the_model_fine_tuning_trains_is_converted_as_upstream(tiny_mt5, device, dtype):
    """fine_tuning.build_model, the model main() hands to DeepSpeed: SyncBatchNorm over several CUDA ranks; on
    CPU plain BatchNorm, with parameters and running statistics in the run's dtype."""
    import fine_tuning

    args = parse_args("--mt5_path", tiny_mt5, "--dtype", dtype)
    args.distributed, args.device = True, torch.device(device)
    model = fine_tuning.build_model(args)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) is (device == "cuda") for m in norms)
    expected = torch.float32 if device == "cuda" else torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {expected}
    assert {m.running_mean.dtype for m in norms} == {expected}


@pytest.fixture
def process_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_train_loader_shuffles_like_upstream_and_drops_the_last_partial_batch(world_root, process_group):
    import fine_tuning

    args = parse_args("--dataset", "CSL_Daily", "--batch-size", "5", "--num_workers", "0", "--seed", "3")
    args.rank, args.world_size = 0, 1  # as utils.init_distributed_mode leaves them on one rank
    loader = fine_tuning.build_loader(args, "train")
    dataset = loader.dataset
    assert len(dataset) == 12 and len(loader) == 2  # 12 samples, batches of 5: the last 2 are dropped
    for epoch in (0, 1):
        upstream = DistributedSampler(dataset, shuffle=True)  # upstream's sampler: seed 0, not --seed
        upstream.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        expected = [dataset.names[i] for i in list(upstream)[:10]]
        assert [name for src, _ in loader for name in src["name_batch"]] == expected
    dev = fine_tuning.build_loader(args, "dev")
    assert [n for src, _ in dev for n in src["name_batch"]] == dev.dataset.names  # in order, all kept


def test_too_few_training_samples_for_one_full_batch_is_a_clear_error(mini_world, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = dict(os.environ, UNISIGN_ROOT=str(mini_world), OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    proc = subprocess.run([sys.executable, str(REPO / "fine_tuning.py"), "--batch-size", "13", "--num_workers", "0",
                           "--dtype", "fp32", "--output_dir", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "12 training samples over 1 rank(s) fill no batch of --batch-size 13" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_final_test_can_load_the_best_weights_into_the_trained_engine(tmp_path, process_group, monkeypatch):
    import deepspeed

    import fine_tuning

    monkeypatch.setenv("LOCAL_RANK", "0")  # what the launcher sets
    for zero in (2, 3):  # one process group for both: DeepSpeed caches its groups per process
        torch.manual_seed(zero)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
        best = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
        torch.save({"model": best}, tmp_path / "best_checkpoint.pth")
        config = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": zero}}
        engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()),
                                          config=config)
        fine_tuning.load_engine_weights(engine, SimpleNamespace(zero_stage=zero), tmp_path / "best_checkpoint.pth")
        with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), enabled=zero == 3):
            loaded = {k: v.clone() for k, v in engine.module.state_dict().items()}
        assert loaded.keys() == best.keys()
        for key, value in best.items():
            assert torch.equal(loaded[key], value), (zero, key)


@pytest.mark.parametrize("zero, kept", [(2, [1, 3]), (3, [0, 1, 2, 3])])
def test_evaluation_loader_gives_rank_1_of_2_its_share_of_the_batches(world_root, zero, kept):
    """Beam search is sharded: rank 1 of 2 translates the 1-rank order's batches 1 and 3 (of 4 batches of 3);
    under ZeRO-3 every rank runs every batch (the weights are gathered together)."""
    import fine_tuning

    args = parse_args("--dataset", "CSL_Daily", "--batch-size", "3", "--num_workers", "0", "--zero_stage", str(zero))
    args.rank, args.world_size = 1, 2
    loader = fine_tuning.build_loader(args, "dev")
    names = loader.dataset.names
    assert [src["name_batch"] for src, _ in loader] == [names[3 * b:3 * b + 3] for b in kept]


@pytest.mark.parametrize("best_epoch,output_dir,expected", [
    # a best dev epoch before the last: the last weights as [test_last_epoch], then the best ones as [test]
    (0, True, [("evaluate", "test_last_epoch", False), ("load", "best_checkpoint.pth"), ("evaluate", "test", True)]),
    (2, True, [("evaluate", "test", True)]),      # the last epoch is the best: its weights are the best ones
    (0, False, [("evaluate", "test", True)]),     # nothing saved to load: the last weights, said so
])
def test_final_test_reports_the_best_dev_weights_as_test(tmp_path, monkeypatch, capsys, best_epoch, output_dir,
                                                         expected):
    import fine_tuning

    calls = []
    monkeypatch.setattr(fine_tuning, "evaluate_and_report", lambda engine, loader, args, phase, provider, ablation:
                        calls.append(("evaluate", phase, ablation)) or {"phase": phase})
    monkeypatch.setattr(fine_tuning, "load_engine_weights", lambda engine, args, path:
                        calls.append(("load", Path(path).name)))
    torch.save({"model": {}}, tmp_path / "best_checkpoint.pth")
    args = SimpleNamespace(epochs=3, output_dir=str(tmp_path) if output_dir else "")
    assert fine_tuning.final_test(None, None, args, None, best_epoch) == {"phase": "test"}
    assert calls == expected
    out = capsys.readouterr().out
    if len(expected) > 1:
        assert "final test on the last epoch's (2) weights, reported as [test_last_epoch]" in out
        assert "final test on the best dev epoch's (0) weights, reported as [test]" in out
    else:
        assert "final test on the last epoch's weights (" in out


@pytest.mark.parametrize("main_process", [True, False])
def test_checkpoints_are_written_by_rank_0_only(tmp_path, monkeypatch, main_process):
    import fine_tuning

    monkeypatch.setattr(fine_tuning.utils, "is_main_process", lambda: main_process)
    torch.manual_seed(0)
    engine = SimpleNamespace(module=torch.nn.Linear(2, 3))
    args = SimpleNamespace(zero_stage=2, output_dir=str(tmp_path), batch_size=4)
    fine_tuning.save_checkpoint(engine, args, tmp_path / "checkpoint_0.pth", 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["checkpoint_0.pth"] if main_process else [])
    if main_process:
        saved = torch.load(tmp_path / "checkpoint_0.pth", map_location="cpu", weights_only=True)
        assert saved["epoch"] == 0 and saved["args"]["batch_size"] == 4
        assert all(torch.equal(v, engine.module.state_dict()[k]) for k, v in saved["model"].items())

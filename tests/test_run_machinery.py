"""The pieces behind whole runs, in memory: sharding and ordered gathering (on 2 real gloo ranks),
log.txt and its plots, resume's checkpoint order, gate means without frames, per-sample frame draws."""
import json
import os
import random

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import parse_args
from uni_sign_ext import resume, run_log
from uni_sign_ext.distributed_eval import (ShardedBatchSampler, broadcast_buffers, gather_ordered, sum_over_ranks,
                                          union_over_ranks)


def test_sharded_batches_deal_whole_one_rank_batches():
    one = ShardedBatchSampler(10, 4)
    assert list(one) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    ranks = [ShardedBatchSampler(10, 4, rank, 2) for rank in (0, 1)]
    assert list(ranks[0]) == [[0, 1, 2, 3], [8, 9]] and list(ranks[1]) == [[4, 5, 6, 7]]
    assert [len(r) for r in ranks] == [2, 1]
    assert [ranks[0].global_index(s) for s in (0, 1)] == [0, 2] and ranks[1].global_index(0) == 1
    unsharded = ShardedBatchSampler(10, 4, rank=1, shards=1)  # ZeRO-3: every rank runs every batch
    assert list(unsharded) == list(one) and unsharded.global_index(2) == 2


def _gather_worker(rank, port, result_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    norm = torch.nn.BatchNorm1d(3)
    norm.running_mean.fill_(rank + 1.0)
    half = torch.nn.BatchNorm1d(3).to(torch.bfloat16)
    half.running_var.fill_(rank + 2.0)
    broadcast_buffers(torch.nn.Sequential(norm, half))
    sampler = ShardedBatchSampler(10, 4, rank, 2)
    local = {sampler.global_index(step): batch for step, batch in enumerate(sampler)}
    result = {
        "ordered": gather_ordered(local),
        "duplicates": gather_ordered({0: "a", 5: "b"} if rank == 0 else {0: "a", 3: "c"}),
        "union": sorted(union_over_ranks({"x", "y"} if rank == 0 else {"y", "z"})),
        "summed": sum_over_ranks(torch.tensor([rank + 1.0]), sharded=True).tolist(),
        "whole": sum_over_ranks(torch.tensor([rank + 1.0]), sharded=False).tolist(),
        "buffers": [norm.running_mean.tolist(), half.running_var.float().tolist()],
    }
    with open(os.path.join(result_dir, f"{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_gathering_over_two_gloo_ranks_restores_one_rank_order(tmp_path):
    from test_deepspeed import free_port

    mp.spawn(_gather_worker, args=(free_port(), str(tmp_path)), nprocs=2)
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert results[0]["ordered"] == results[1]["ordered"] == list(ShardedBatchSampler(10, 4))
    assert results[0]["duplicates"] == ["a", "c", "b"]  # key 0 met on both ranks: kept once
    assert results[0]["union"] == results[1]["union"] == ["x", "y", "z"]
    assert [r["summed"] for r in results] == [[3.0], [3.0]]
    assert [r["whole"] for r in results] == [[1.0], [2.0]]
    assert results[1]["buffers"] == results[0]["buffers"] == [[1.0] * 3, [2.0] * 3]  # rank 0's, also bf16



def _problem_log_worker(rank, port, result_dir):
    """Both ranks meet sample 'a' (as every rank runs every batch under ZeRO-3, or the training sampler pads
    with a repeat); each also meets one of its own."""
    from datasets import SampleWarning, SkippedSample
    from fine_tuning import ProblemLog

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    log = ProblemLog()
    own = "b" if rank == 0 else "c"
    log.add({"skipped": [SkippedSample("a", "/x/a.pkl", "no frames"), SkippedSample(own, f"/x/{own}.pkl", "bad")],
             "desc_problems": [("/d/a.json", "not JSON")], "warnings": [SampleWarning(own, "empty target")]})
    with open(os.path.join(result_dir, f"{rank}.json"), "w") as f:
        json.dump(log.report("dev evaluation"), f)
    dist.destroy_process_group()


def test_problems_met_on_two_gloo_ranks_count_once(tmp_path):
    from test_deepspeed import free_port

    mp.spawn(_problem_log_worker, args=(free_port(), str(tmp_path)), nprocs=2)
    totals = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert totals == [[3, 1, 2], [3, 1, 2]]  # not 4 skips, 2 description files: 'a' counts once

def test_gate_means_are_none_and_print_na_without_frames_of_a_kind():
    from fine_tuning import format_metrics
    from uni_sign_ext.fusion import GateStats

    stats = GateStats()
    gate = torch.tensor([[0.25, 0.75, 0.5]]).unsqueeze(-1)
    stats.add({"gate": gate, "has_description": torch.zeros(1, 3)}, torch.tensor([[1, 1, 0]]))
    means = stats.means(sharded=False)
    assert means == {"gate_described": None, "gate_undescribed": 0.5}  # the padded frame is left out
    metrics = {"bleu1": 1.0, "bleu2": 2.0, "bleu3": 3.0, "bleu4": 4.0, "rouge": 5.0, **means}
    assert format_metrics(metrics).endswith("| mean gate: described n/a, undescribed 0.5000")


def test_log_records_keep_upstream_keys_and_resume_drops_redone_epochs(tmp_path):
    for epoch in range(3):
        run_log.append(tmp_path, run_log.epoch_record(
            epoch, {"loss": 3.0 - epoch, "lr": 1e-3}, {"bleu4": float(epoch), "gate_described": None}, 42,
            seconds=1.5))
    records = run_log.read(tmp_path / "log.txt")
    assert records[1] == {"train_loss": 2.0, "train_lr": 1e-3, "test_bleu4": 1.0, "test_gate_described": None,
                          "epoch": 1, "n_parameters": 42, "seconds": 1.5}
    run_log.keep_epochs_before(tmp_path, 1)
    assert [r["epoch"] for r in run_log.read(tmp_path / "log.txt")] == [0]


def test_plot_command_draws_several_runs(tmp_path, capsys):
    from PIL import Image

    logs = []
    for name, gated in (("pose_only", False), ("descriptions", True)):
        (tmp_path / name).mkdir()
        for epoch in range(2):
            dev = {"bleu4": 1.0 + epoch}
            if gated:
                dev.update(gate_described=0.2, gate_undescribed=None)
            run_log.append(tmp_path / name, run_log.epoch_record(epoch, {"loss": 2.0, "lr": 1e-3}, dev, 1))
        logs.append(str(tmp_path / name / "log.txt"))
    out = tmp_path / "cmp.png"
    run_log.main(["plot", *logs, "-o", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    assert Image.open(out).size == (3 * 450, 350)  # loss, BLEU-4 and gate panels
    run_log.plot_run(tmp_path / "pose_only")  # no gate means: two panels
    assert Image.open(tmp_path / "pose_only" / "curves.png").size == (2 * 450, 350)


@pytest.mark.parametrize("argv, message", [
    (["plot", "missing/log.txt"], "missing/log.txt: no such file"),
    (["plot", "{log}", "--labels", "a", "b"], "--labels: 2 labels for 1 logs"),
])
def test_plot_command_errors_name_the_problem(tmp_path, capsys, argv, message):
    (tmp_path / "log.txt").write_text("not a record\n")
    with pytest.raises(SystemExit):
        run_log.main([a.replace("{log}", str(tmp_path / "log.txt")) for a in argv])
    assert message in capsys.readouterr().err


def test_resume_tries_checkpoints_newest_epoch_first(tmp_path):
    for name in ("epoch_9", "epoch_10", "epoch_2", "epoch_x", "latest"):
        (tmp_path / name).mkdir()
    assert resume.tags(tmp_path) == ["epoch_10", "epoch_9", "epoch_2"]


def test_rng_state_round_trip_includes_the_fusions_text_dropout_stream():
    from uni_sign_ext.fusion import DescriptionFusion

    random.seed(1), torch.manual_seed(1)
    model = torch.nn.Sequential(DescriptionFusion(4, 4, text_dropout_p=0.5))
    has = torch.ones(3, 40)
    model[0].dropped_frames(has)  # the stream has started
    state = resume.rng_state(model)
    expected = random.random(), torch.rand(3), model[0].dropped_frames(has)
    random.seed(2), torch.manual_seed(2)
    model[0].dropped_frames(has)
    resume.set_rng_state(state, model)
    assert (random.random(), *torch.rand(3).tolist()) == (expected[0], *expected[1].tolist())
    assert torch.equal(model[0].dropped_frames(has), expected[2])


@pytest.mark.parametrize("flags, message", [
    (["--resume"], "--resume needs --output_dir"),
    (["--resume", "--eval", "--output_dir", "x"], "--resume continues training; --eval does not train"),
])
def test_resume_flag_errors(flags, message):
    from uni_sign_ext.cli import check_run_args

    with pytest.raises(SystemExit, match=message):
        check_run_args(parse_args(*flags))


def test_evaluation_frames_do_not_depend_on_the_global_stream(world_root):
    import config
    from datasets import S2T_Dataset

    def frames(phase, seed, order):
        labels = {"train": config.train_label_paths, "dev": config.dev_label_paths}[phase]["CSL_Daily"]
        dataset = S2T_Dataset(labels, parse_args("--max_length", "8"), phase)
        random.seed(seed)
        return {i: dataset[i][1]["body"] for i in order}

    dev = [frames("dev", seed, order) for seed, order in ((0, [0, 1, 2]), (1, [2, 1, 0]))]
    assert all(torch.equal(dev[0][i], dev[1][i]) for i in range(3))
    train = [frames("train", seed, [0, 1, 2]) for seed in (0, 1)]
    assert not all(torch.equal(train[0][i], train[1][i]) for i in range(3))  # training keeps its random draws

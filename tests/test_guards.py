"""The guards of docs/errors.md, one class at a time: flags, bounded parsing, atomic writes, caches that
merge and refuse NaN, architecture checks, non-finite losses and models, a checklist that never crashes."""
import errno
import json
import os
import tracemalloc
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import config
from conftest import parse_args
from uni_sign_ext import checklist
from uni_sign_ext.atomic_io import DiskWriteError, atomic_torch_save, atomic_write, check_writable_dir
from uni_sign_ext.checkpoint import CheckpointError, check_architecture
from uni_sign_ext.descriptions import UNKNOWN_CLIP_FRAMES, parse_descriptions_with_warnings
from uni_sign_ext.feature_cache import CorruptCacheError, FeatureCache, NonFiniteFeaturesError
from uni_sign_ext.fusion import DescriptionFusion
from uni_sign_ext.guards import (NonFiniteError, check_numeric_flags, exit_on_user_error, loss_is_usable,
                                 refuse_nonfinite_model)
from uni_sign_ext.labels import LabelFileError
from uni_sign_ext.layout import DataLayout
from utils import check_supported

@pytest.mark.parametrize("flags,named", [
    (["--max_length", "0"], "--max_length 0"), (["--max_length", "-1"], "--max_length -1"),
    (["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps 0"),
    (["--batch-size", "0"], "--batch-size 0"), (["--lr", "nan"], "--lr nan"), (["--epochs", "-2"], "--epochs -2"),
    (["--lr", "1e39"], r"--lr 1e\+39: must be in \[0, 1e\+30\]"),
    (["--label_smoothing", "1"], "--label_smoothing 1"), (["--opt-betas", "0.9"], "--opt-betas 0.9"),
])
def test_unusable_numeric_flags_are_named(flags, named):
    with pytest.raises(SystemExit, match=named):
        check_numeric_flags(parse_args(*flags))


def test_default_and_upstream_flags_pass():
    check_numeric_flags(parse_args())
    check_numeric_flags(parse_args("--opt-betas", "0.9", "0.98", "--max_length", "1", "--epochs", "0"))


def test_user_errors_are_one_line_and_exit_two(capsys):
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        raise LabelFileError("labels.train: no usable train sample: it holds no samples; fix the file")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: labels.train: no usable train sample: it holds no samples; fix the file\n"
    with pytest.raises(KeyError), exit_on_user_error():  # a bug is not a user error: its traceback stays
        raise KeyError("bug")


def test_segment_bomb_costs_what_the_clip_costs():
    bomb = [{"start": 0, "end": 10_000_000, "text": "left hand moves up"}]
    tracemalloc.start()
    descriptions, _, warnings = parse_descriptions_with_warnings(bomb, clip_end=100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sorted(descriptions) == list(range(100)) and peak < 2 ** 20, peak  # unbounded: ~1.8 GB
    assert warnings == ["descriptions of frames 100…10000000, beyond the clip's 100 frames, dropped (frame "
                        "numbers must count the pose file's frames)"]
    unknown_clip, _, warnings = parse_descriptions_with_warnings(bomb)
    assert len(unknown_clip) == UNKNOWN_CLIP_FRAMES and "not expanded there" in warnings[0]


def test_keys_beyond_the_clip_are_dropped_and_the_rest_kept():
    descriptions, _, warnings = parse_descriptions_with_warnings({"3": "a", "120": "b", "5000": "c"}, clip_end=100)
    assert descriptions == {3: "a"} and len(warnings) == 1 and "120…5000" in warnings[0]


def test_atomic_write_keeps_the_old_file_on_any_failure(tmp_path, monkeypatch):
    path = tmp_path / "best_checkpoint.pth"
    atomic_torch_save({"model": {"w": torch.ones(2)}}, path)
    before = path.read_bytes()

    def disk_full(f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskWriteError, match=f"cannot write {path}: No space left on device .*intact"):
        atomic_write(path, disk_full, size=10)
    monkeypatch.setattr("shutil.disk_usage", lambda _: SimpleNamespace(free=100))
    with pytest.raises(DiskWriteError, match=r"about 0\.0 MiB needed, 0\.0 MiB free"):
        atomic_torch_save({"model": {"w": torch.ones(1000)}}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]  # no temporary file left
    assert torch.equal(torch.load(path)["model"]["w"], torch.ones(2))


def test_unwritable_folders_are_named_with_their_flag(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DiskWriteError, match="--feature_cache_dir .*a_file/cache: not a writable folder"):
        check_writable_dir(tmp_path / "a_file" / "cache", "--feature_cache_dir")
    check_writable_dir(tmp_path / "new" / "out", "--output_dir")
    assert (tmp_path / "new" / "out").is_dir()


def cache(texts, value=1.0):
    c = FeatureCache("/enc", "f" * 64, 4)
    c.add(texts, torch.full((len(texts), 4), value))
    return c


def test_cache_refuses_nonfinite_features(tmp_path):
    with pytest.raises(NonFiniteFeaturesError, match="NaN/inf features for 1 texts .*'b'"):
        FeatureCache("/enc", "f" * 64, 4).add(["a", "b"], torch.tensor([[1.0] * 4, [float("nan")] * 4]))
    path = tmp_path / "c.pt"
    torch.save({"format": 1, "encoder_path": "/enc", "fingerprint": "f" * 64, "d_model": 4, "texts": ["a"],
                "features": torch.full((1, 4), float("inf"))}, path)
    with pytest.raises(CorruptCacheError, match="1 texts have NaN/inf features"):
        FeatureCache.load(path, "f" * 64)


def test_concurrent_cache_writers_merge(tmp_path):
    path = tmp_path / "ds__enc__ffffffffffff.pt"
    training, fill = cache(["a", "b"]), cache(["b", "c"], value=2.0)  # both opened the same (absent) file
    fill.save(path)
    training.save(path)  # must keep what the fill wrote meanwhile
    merged = FeatureCache.load(path, "f" * 64)
    assert sorted(merged.texts) == ["a", "b", "c"]
    assert merged.features[merged.rows["c"]].tolist() == [2.0] * 4


class TinyModel(nn.Module):
    def __init__(self, fusion_type, hidden=8):
        super().__init__()
        self.proj = nn.Linear(hidden, 8)
        self.text_fusion = DescriptionFusion(8, 8, fusion_type)


@pytest.mark.parametrize("saved,loading", [("gating", "cross_attn"), ("cross_attn", "gating")])
def test_fusion_type_must_match_the_checkpoint(saved, loading):
    state = TinyModel(saved).state_dict()
    with pytest.raises(CheckpointError, match=f"ckpt.pth holds {saved} fusion weights, which do not fit "
                                              f"--text_fusion_type {loading}: pass --text_fusion_type {saved}"):
        check_architecture(TinyModel(loading), state, "ckpt.pth")
    check_architecture(TinyModel(saved), state, "ckpt.pth")


def test_a_nan_checkpoint_is_refused_before_loading():
    state = TinyModel("gating").state_dict()
    state["proj.bias"][0] = float("nan")
    with pytest.raises(CheckpointError, match=r"ckpt.pth holds NaN/inf weights \(proj.bias\)"):
        check_architecture(TinyModel("gating"), state, "ckpt.pth")


def test_shape_mismatch_names_the_architecture_flags():
    with pytest.raises(CheckpointError, match=r"other architecture flags \(--hidden_dim.*proj.weight \(8, 16\) "
                                              r"vs \(8, 8\)"):
        check_architecture(TinyModel("gating"), TinyModel("gating", hidden=16).state_dict(), "ckpt.pth")


def test_nonfinite_loss_stops_or_skips_and_nan_models_are_never_written(tmp_path):
    (tmp_path / "checkpoint_0.pth").write_bytes(b"x")
    args = SimpleNamespace(nonfinite_loss="stop", output_dir=str(tmp_path))
    assert loss_is_usable(torch.tensor(2.5), ["a"], 0, 0, args)
    with pytest.raises(NonFiniteError, match=r"epoch 1 step 4: the training loss is nan .*samples: a, b\).*"
                                             r"last checkpoint saved: .*checkpoint_0.pth"):
        loss_is_usable(torch.tensor(float("nan")), ["a", "b"], 1, 3, args)
    args.nonfinite_loss = "skip"
    assert not loss_is_usable(torch.tensor(float("inf")), ["a"], 0, 0, args)
    state = {"ok": torch.ones(2), "bad": torch.tensor([1.0, float("nan")]), "steps": torch.tensor(3)}
    with pytest.raises(NonFiniteError, match=r"NaN/inf weights \(bad\); best_checkpoint.pth was not written"):
        refuse_nonfinite_model(state, "best_checkpoint.pth", str(tmp_path))


def test_checklist_reports_a_crashing_check_and_goes_on(world_root, capsys, monkeypatch, tmp_path):
    def broken_check(args):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(checklist, "check_feature_cache", broken_check)
    args = parse_args("--use_descriptions", "--feature_cache_dir", str(tmp_path))
    layout = DataLayout.from_config(config, args.dataset)
    code = checklist.report(checklist.run_checks(args, layout, check_supported), as_json=True)
    report = json.loads(capsys.readouterr().out)
    crashed = [c for c in report["checks"] if c["name"] == "feature cache"]
    assert code == 1 and crashed[0]["detail"] == "the check itself crashed: ZeroDivisionError: planted"
    assert any(c["name"] == "descriptions train" for c in report["checks"])  # the other checks still ran


def test_checklist_a_split_that_crashes_leaves_the_other_splits_checked(world_root, capsys, monkeypatch):
    real = checklist.pose_loading_check

    def crashes_on_dev(split, sample):
        if split == "dev":
            raise ZeroDivisionError("planted")
        return real(split, sample)

    monkeypatch.setattr(checklist, "pose_loading_check", crashes_on_dev)
    args = parse_args("--use_descriptions")
    code = checklist.report(checklist.run_checks(args, DataLayout.from_config(config, args.dataset), check_supported),
                            as_json=True)
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert code == 1 and checks["labels dev"]["detail"] == "the check itself crashed: ZeroDivisionError: planted"
    assert checks["pose files train"]["status"] == checks["pose files test"]["status"] == "pass"
    assert "descriptions train" in checks and "descriptions test" in checks


def test_checklist_json_stays_json_when_a_flag_does_not_parse(capsys):
    import pre_training_checklist

    code = pre_training_checklist.main(["--json", "--max_length", "many"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["ok"]
    assert report["checks"] == [{"name": "flags", "status": "fail", "fix": "fix the flag (see --help)",
                                 "detail": "argument --max_length: invalid int value: 'many'"}]


@pytest.mark.parametrize("saved,flags,status,text", [
    ("gating", ["--use_descriptions", "--text_fusion_type", "cross_attn"], "fail", "pass --text_fusion_type gating"),
    ("cross_attn", ["--use_descriptions"], "fail", "pass --text_fusion_type cross_attn"),
    ("gating", [], "fail", "add --use_descriptions --text_fusion_type gating"),
    (None, ["--use_descriptions", "--eval"], "warn", "evaluate a checkpoint trained with --use_descriptions"),
    ("gating", ["--use_descriptions"], "pass", ""),
])
def test_checklist_compares_the_checkpoint_with_the_architecture_flags(tmp_path, saved, flags, status, text):
    path = tmp_path / "ckpt.pth"
    state = TinyModel(saved).state_dict() if saved else {"proj.weight": torch.zeros(1)}
    torch.save({"model": state}, path)
    check = checklist.check_finetune_fusion(parse_args("--finetune", str(path), *flags))
    assert check.status == status and text in check.fix


def test_training_never_writes_a_nan_model_even_over_a_good_best_checkpoint(tmp_path):
    """fine_tuning.save_checkpoint refuses NaN weights: best_checkpoint.pth keeps the last good model."""
    import fine_tuning

    best = tmp_path / "best_checkpoint.pth"
    model = nn.Linear(2, 2)
    engine = SimpleNamespace(module=model)
    args = parse_args("--output_dir", str(tmp_path))
    fine_tuning.save_checkpoint(engine, args, best, 0)
    good = best.read_bytes()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"NaN/inf weights \(weight\); .*best_checkpoint.pth was not written"):
        fine_tuning.save_checkpoint(engine, args, best, 1)
    assert best.read_bytes() == good

"""pre_training_checklist.py: real checks, one-line fixes, exit code, --json."""
import json
import shutil


import pre_training_checklist


def run(capsys, *flags):
    code = pre_training_checklist.main(["--dataset", "CSL_Daily", "--json", *flags])
    return code, json.loads(capsys.readouterr().out)


def by_name(report):
    return {c["name"]: c for c in report["checks"]}


def test_clean_world_passes_with_descriptions(world_root, capsys, tmp_path):
    code, report = run(capsys, "--use_descriptions", "--feature_cache_dir", str(tmp_path / "cache"))
    checks = by_name(report)
    assert code == 0 and report["ok"], [c for c in report["checks"] if c["status"] == "fail"]
    assert checks["GPUs"]["status"] in ("warn", "pass")
    assert "d_model 768" in checks["mT5 (translator)"]["detail"]
    assert checks["labels train"]["detail"].endswith("12 samples")
    assert checks["poses test"]["status"] == "pass"
    share = checks["descriptions train"]["detail"]
    assert "of 12 samples" in share and "(0%)" not in share
    aligned = checks["aligned frames train"]["detail"]
    assert "exact" in aligned and "interpolated" in aligned and "without text" in aligned
    assert checks["feature cache"]["status"] == "warn" and "python -m uni_sign_ext.feature_cache" in checks["feature cache"]["fix"]


def test_problems_fail_with_fixes(world_root, capsys, tmp_path):
    broken = tmp_path / "mt5"
    shutil.copytree(world_root / "pretrained_weight" / "mt5-base", broken)
    (broken / "spiece.model").write_bytes(b"garbage")
    (world_root / "description" / "CSL_Daily").rename(tmp_path / "moved")
    try:
        code, report = run(capsys, "--use_descriptions", "--mt5_path", str(broken), "--task", "ISLR",
                           "--finetune", str(tmp_path / "missing.pth"))
    finally:
        (tmp_path / "moved").rename(world_root / "description" / "CSL_Daily")
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    text = json.dumps(failed)
    assert code == 1 and not report["ok"]
    assert "does not load" in text and str(broken) in text
    assert "no folder for CSL_Daily" in text
    assert "--use_descriptions works with --task SLT only" in text
    assert "missing.pth does not exist" in text
    assert all(c["fix"] for c in failed)


def test_malformed_descriptions_and_missing_poses_are_listed(world_root, capsys, tmp_path):
    desc = sorted((world_root / "description" / "CSL_Daily" / "split_data" / "dev").glob("*.json"))[0]
    pose = sorted((world_root / "dataset" / "CSL_Daily" / "pose_format").glob("*T01.pkl"))[0]
    saved_desc, saved_pose = desc.read_bytes(), pose.read_bytes()
    desc.write_text("{oops")
    pose.unlink()
    try:
        code, report = run(capsys, "--use_descriptions", "--feature_cache_dir", "")
    finally:
        desc.write_bytes(saved_desc)
        pose.write_bytes(saved_pose)
    checks = by_name(report)
    assert str(desc) in checks["description files"]["detail"] and "not JSON" in checks["description files"]["detail"]
    assert checks["poses dev"]["status"] == "warn" and pose.stem in checks["poses dev"]["detail"]
    assert code == 0  # warnings alone do not fail the run


def test_human_readable_output(world_root, capsys):
    code = pre_training_checklist.main(["--dataset", "CSL_Daily"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[pass] labels train" in out and "passed," in out and "failed" in out


def test_cache_status_built_then_stale(world_root, capsys, tmp_path):
    from uni_sign_ext.feature_cache import TextFeatureProvider

    mt5 = tmp_path / "mt5"
    shutil.copytree(world_root / "pretrained_weight" / "mt5-base", mt5)
    flags = ("--use_descriptions", "--mt5_path", str(mt5), "--feature_cache_dir", str(tmp_path / "cache"))
    TextFeatureProvider(str(mt5), cache_dir=str(tmp_path / "cache"), dataset="CSL_Daily").warm(
        ["left hand moves up"], progress=False)
    _, report = run(capsys, *flags)
    assert by_name(report)["feature cache"]["status"] == "pass"
    assert by_name(report)["feature cache"]["detail"].endswith("1 texts")
    weights = mt5 / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # the encoder's weights change: the old cache must be named, not silently ignored
    weights.write_bytes(bytes(data))
    code, report = run(capsys, *flags)
    cache = by_name(report)["feature cache"]
    assert code == 1 and cache["status"] == "fail" and "fingerprint" in cache["detail"]

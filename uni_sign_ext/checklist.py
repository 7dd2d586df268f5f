"""Pre-training checks: what would otherwise fail hours into a run, each with a one-line fix.

Takes fine_tuning.py's flags, so a user checks the exact command they are about to launch.
"""
import json
import os
import random
from dataclasses import asdict, dataclass
from importlib import metadata

PASS, WARN, FAIL = "pass", "warn", "fail"
PACKAGES = ("torch", "transformers", "deepspeed", "sentencepiece", "sacrebleu", "rouge", "numpy")
NAMES_SHOWN = 5
ALIGNMENT_SAMPLE_VIDEOS = 50


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def check_packages():
    checks = []
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            checks.append(Check(f"package {package}", FAIL, "not installed", "pip install -r requirements.txt"))
            continue
        status, fix = PASS, ""
        if package == "transformers" and int(version.split(".")[0]) >= 5:
            status, fix = WARN, "transformers 5 is untested here: pip install transformers==4.57.6"
        checks.append(Check(f"package {package}", status, version, fix))
    return checks


def check_gpus(args):
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        return [Check("GPUs", WARN, "no CUDA GPU visible: training would run on the CPU, very slowly",
                      "run on a GPU machine, or check CUDA_VISIBLE_DEVICES and the torch build")]
    checks = [Check("GPUs", PASS, f"{count} visible: {torch.cuda.get_device_name(0)}")]
    if args.dtype == "bf16" and not torch.cuda.is_bf16_supported():
        checks.append(Check("bf16", FAIL, "this GPU has no bf16 support", "pass --dtype fp16"))
    return checks


def check_mt5(path, role):
    """The folder must really load: config and tokenizer, and hold a weight file."""
    from transformers import MT5Config, T5Tokenizer

    name = f"mT5 ({role})"
    fix = f"put a Hugging Face mt5-base folder (config.json, weights, spiece.model) at {path}, or pass its path"
    if not os.path.isdir(path):
        return Check(name, FAIL, f"{path} does not exist", fix)
    try:
        config = MT5Config.from_pretrained(path)
        tokenizer = T5Tokenizer.from_pretrained(path, legacy=False)
        tokenizer("Translate sign language video to English: ")
    except Exception as exc:
        return Check(name, FAIL, f"{path} does not load: {type(exc).__name__}: {exc}", fix)
    weights = [f for f in os.listdir(path) if f.endswith((".safetensors", ".bin"))]
    if not weights:
        return Check(name, FAIL, f"{path} has a config and tokenizer but no weight file", fix)
    return Check(name, PASS, f"{path}: d_model {config.d_model}, {config.num_layers}+{config.num_decoder_layers} "
                             f"layers, vocabulary {len(tokenizer)}")


def label_paths(args):
    import config

    return {"train": config.train_label_paths[args.dataset], "dev": config.dev_label_paths[args.dataset],
            "test": config.test_label_paths[args.dataset]}


def check_labels_and_poses(args):
    """Each split's labels parse, and every labelled sample has its pose file."""
    from datasets import pose_file_name, pose_folder
    from uni_sign_ext.labels import LabelFileError, load_labels

    checks, splits = [], {}
    for split, path in label_paths(args).items():
        try:
            labels = load_labels(path, args.dataset, split)
        except LabelFileError as exc:
            checks.append(Check(f"labels {split}", FAIL, str(exc), "check config.py's label paths or UNISIGN_ROOT"))
            continue
        checks.append(Check(f"labels {split}", PASS, f"{path}: {len(labels)} samples"))
        folder = pose_folder(args, path)
        present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        missing = [n for n, e in labels.items() if pose_file_name(e["video_path"]) not in present]
        if not labels or len(missing) == len(labels):
            checks.append(Check(f"poses {split}", FAIL, f"no pose files for {split} in {folder}",
                                "check config.pose_dirs / UNISIGN_ROOT and the pose extraction"))
        elif missing:
            checks.append(Check(f"poses {split}", WARN, f"{len(missing)} of {len(labels)} labelled samples have "
                                f"no pose file in {folder} and will be skipped (e.g. {', '.join(missing[:NAMES_SHOWN])})",
                                "extract the missing poses, or accept the skip"))
        else:
            checks.append(Check(f"poses {split}", PASS, f"all {len(labels)} samples have a pose file in {folder}"))
        splits[split] = (labels, folder)
    return checks, splits


def check_descriptions(args, splits):
    from uni_sign_ext.descriptions import DescriptionLoader, find_description_dir

    folder = find_description_dir(args.desc_dir, args.dataset)
    if folder is None:
        return [Check("description folder", FAIL, f"no folder for {args.dataset} under {args.desc_dir}",
                      f"put descriptions in {os.path.join(args.desc_dir, args.dataset)}/ or pass --desc_dir")]
    checks = [Check("description folder", PASS, str(folder))]
    problems = {}
    for split, (labels, pose_dir) in splits.items():
        loader = DescriptionLoader(folder, phase=split)
        loaded = {name: loader.load(name)[0] for name in labels}
        problems.update(dict(loader.problems))
        described = sum(1 for d in loaded.values() if d)
        share = described / max(1, len(labels))
        status = PASS if described else WARN
        checks.append(Check(f"descriptions {split}", status,
                            f"{described} of {len(labels)} samples ({share:.0%}) have descriptions",
                            "" if described else "check the file names match the label names"))
        checks.append(alignment_coverage(args, split, labels, pose_dir, loaded))
    if problems:
        listing = "; ".join(f"{path}: {reason}" for path, reason in sorted(problems.items()))
        checks.append(Check("description files", WARN, f"{len(problems)} files with problems (they train as "
                            f"'no descriptions' or lose the entries named): {listing}",
                            "fix or regenerate the files listed"))
    else:
        checks.append(Check("description files", PASS, "all description files parse"))
    return checks


def alignment_coverage(args, split, labels, pose_dir, loaded):
    """Share of sampled frames that are exact / interpolated / without text, on a sample of videos."""
    from datasets import pose_file_name
    from uni_sign_ext.alignment import align_descriptions
    from uni_sign_ext.pose import PoseFileError, read_pose_file, sample_frame_indices

    rng = random.Random(0)
    names = rng.sample(sorted(labels), min(ALIGNMENT_SAMPLE_VIDEOS, len(labels)))
    exact = interpolated = nearest = none = 0
    for name in names:
        try:
            _, _, start, end = read_pose_file(os.path.join(pose_dir, pose_file_name(labels[name]["video_path"])))
        except PoseFileError:
            continue
        plan = align_descriptions(loaded[name], sample_frame_indices(start, end, args.max_length, rng))
        exact += int((plan.has_description > 0).sum())
        interpolated += int(((plan.left != plan.right) & (plan.left >= 0)).sum())
        nearest += int(((plan.left == plan.right) & (plan.left >= 0) & (plan.has_description == 0)).sum())
        none += int((plan.left < 0).sum())
    total = max(1, exact + interpolated + nearest + none)
    return Check(f"aligned frames {split}", PASS if exact + interpolated + nearest else WARN,
                 f"on {len(names)} videos: {exact / total:.0%} exact, {interpolated / total:.0%} interpolated, "
                 f"{nearest / total:.0%} nearest, {none / total:.0%} without text")


def check_feature_cache(args):
    from uni_sign_ext.feature_cache import CorruptCacheError, StaleCacheError, open_cache

    encoder = args.mt5_model or args.mt5_path
    if not args.feature_cache_dir:
        return Check("feature cache", WARN, "disabled (--feature_cache_dir ''): texts are re-encoded every run",
                     "pass --feature_cache_dir DIR")
    try:
        path, cache = open_cache(args.feature_cache_dir, args.dataset, encoder)
    except FileNotFoundError as exc:
        return Check("feature cache", FAIL, str(exc), "fix the text encoder folder (--mt5_model)")
    except (StaleCacheError, CorruptCacheError) as exc:
        return Check("feature cache", FAIL, str(exc), "delete the file named and rebuild the cache")
    if not len(cache):
        return Check("feature cache", WARN, f"{path} not built yet: the first epoch encodes the texts",
                     f"python -m uni_sign_ext.feature_cache --mt5_path {encoder} --desc_dir {args.desc_dir} "
                     f"--dataset {args.dataset} --cache_dir {args.feature_cache_dir}")
    return Check("feature cache", PASS, f"{path}: {len(cache)} texts")


def check_flags(args):
    from uni_sign_ext.cli import check_description_args
    from utils import check_supported

    checks = []
    for check in (check_supported, check_description_args):
        try:
            check(args)
        except SystemExit as exc:
            checks.append(Check("flags", FAIL, str(exc), "change the flags as the message says"))
    if args.offload and args.zero_stage == 0:
        checks.append(Check("flags", FAIL, "--offload needs ZeRO stage 1, 2 or 3", "pass --zero_stage 2"))
    if args.finetune and not os.path.isfile(args.finetune):
        checks.append(Check("flags", FAIL, f"--finetune {args.finetune} does not exist", "fix the path"))
    if args.fusion_checkpoint and not os.path.isfile(args.fusion_checkpoint):
        checks.append(Check("flags", FAIL, f"--fusion_checkpoint {args.fusion_checkpoint} does not exist",
                            "fix the path"))
    if args.eval and not args.finetune:
        checks.append(Check("flags", WARN, "--eval without --finetune evaluates untrained pose weights",
                            "pass --finetune CHECKPOINT"))
    return checks or [Check("flags", PASS, "flag combination is usable")]


def run_checks(args):
    checks = check_packages() + check_gpus(args) + check_flags(args)
    checks.append(check_mt5(args.mt5_path, "translator"))
    label_checks, splits = check_labels_and_poses(args)
    checks += label_checks
    if args.use_descriptions:
        if args.mt5_model and args.mt5_model != args.mt5_path:
            checks.append(check_mt5(args.mt5_model, "text encoder"))
        checks += check_descriptions(args, splits)
        checks.append(check_feature_cache(args))
    return checks


SYMBOL = {PASS: "✓", WARN: "!", FAIL: "✗"}


def report(checks, as_json=False):
    """Print the report; returns the exit code (0 only when nothing failed)."""
    failed = any(c.status == FAIL for c in checks)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, ensure_ascii=False, indent=1))
    else:
        for c in checks:
            print(f"{SYMBOL[c.status]} [{c.status}] {c.name}: {c.detail}")
            if c.fix and c.status != PASS:
                print(f"    fix: {c.fix}")
        counts = {s: sum(c.status == s for c in checks) for s in (PASS, WARN, FAIL)}
        print(f"\n{counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed")
    return 1 if failed else 0

"""Pre-training checks: what would otherwise fail hours into a run, each with a one-line fix.

Takes fine_tuning.py's flags, so a user checks the exact command they are about to launch.
"""
import json
import os
import random
from dataclasses import asdict, dataclass
from importlib import metadata

from uni_sign_ext.layout import pose_file_name

PASS, WARN, FAIL = "pass", "warn", "fail"
PACKAGES = ("torch", "transformers", "deepspeed", "sentencepiece", "sacrebleu", "rouge", "numpy")
NAMES_SHOWN = 5
POSE_FILES_LOADED = 50  # per split: enough to catch a broken extraction, bounded whatever the dataset's size


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


def check_labels_and_poses(args, layout):
    """Each split's labels parse, every labelled sample has its pose file, and a sample of them loads.

    → (checks, {split: (usable entries, pose sample, names of the unusable entries)}); a split whose labels
    are unusable is reported as such, never as missing poses. Each split is checked in isolation: one that
    crashes is a failed check naming the error, and the other splits are still checked.
    """
    checks, splits = [], {}
    for split, path in layout.label_paths.items():
        try:
            split_checks, entry = check_split_labels_and_poses(args, layout, split, path)
        except Exception as exc:  # the checklist must always print its report
            split_checks, entry = [crashed(f"labels {split}", exc)], None
        checks += split_checks
        if entry is not None:
            splits[split] = entry
    return checks, splits


def check_split_labels_and_poses(args, layout, split, path):
    """check_labels_and_poses for one split → (checks, its entry or None when its labels or poses are unusable)."""
    from uni_sign_ext.labels import LabelFileError, load_labels

    checks = []
    try:
        label_set = load_labels(path, args.dataset, split)
    except LabelFileError as exc:
        checks.append(Check(f"labels {split}", FAIL, str(exc), "check config.py's label paths or UNISIGN_ROOT"))
        return checks, None
    labels = label_set.entries
    checks.append(Check(f"labels {split}", PASS, f"{path}: {len(labels)} samples"))
    if label_set.skipped:
        checks.append(Check(f"label entries {split}", WARN, f"{len(label_set.skipped)} unusable entries will be "
                            f"skipped: {_examples(label_set.skipped)}", "fix those entries in the label file"))
    if label_set.warnings:
        checks.append(Check(f"label targets {split}", WARN, f"{len(label_set.warnings)} suspicious entries: "
                            f"{_examples(label_set.warnings)}", "check the target sentences"))
    folder = layout.pose_folder(split)
    try:
        present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    except OSError as exc:
        present = set()
        checks.append(Check(f"pose folder {split}", FAIL, f"{folder}: unreadable ({exc})", "fix its permissions"))
    missing = [n for n, e in labels.items() if pose_file_name(e["video_path"]) not in present]
    if len(missing) == len(labels):
        checks.append(Check(f"poses {split}", FAIL, f"none of the {len(labels)} {split} samples has a pose file "
                            f"in {folder}", "check config.pose_dirs / UNISIGN_ROOT and the pose extraction"))
        return checks, None
    if missing:
        checks.append(Check(f"poses {split}", WARN, f"{len(missing)} of {len(labels)} labelled samples have "
                            f"no pose file in {folder} and will be skipped (e.g. {', '.join(missing[:NAMES_SHOWN])})",
                            "extract the missing poses, or accept the skip"))
    else:
        checks.append(Check(f"poses {split}", PASS, f"all {len(labels)} samples have a pose file in {folder}"))
    with_pose = {n: e for n, e in labels.items() if n not in set(missing)}
    sample = load_pose_sample_of(args, with_pose, folder)
    checks.append(pose_loading_check(split, sample))
    return checks, (labels, sample, set(label_set.skipped))


def _examples(problems):
    return "; ".join(f"{name}: {reason}" for name, reason in list(problems.items())[:NAMES_SHOWN])


def load_pose_sample_of(args, labels, folder):
    """Load up to POSE_FILES_LOADED pose files (chosen with a fixed seed) as training would:
    → {name: PoseSample or PoseFileError}."""
    from uni_sign_ext.pose import PoseFileError, load_pose_sample

    rng = random.Random(0)
    loaded = {}
    for name in rng.sample(sorted(labels), min(POSE_FILES_LOADED, len(labels))):
        try:
            loaded[name] = load_pose_sample(os.path.join(folder, pose_file_name(labels[name]["video_path"])),
                                            args.max_length, rng)
        except PoseFileError as exc:
            loaded[name] = exc
    return loaded


def pose_loading_check(split, sample):
    from uni_sign_ext.pose import PoseFileError

    bad = {n: r.reason for n, r in sample.items() if isinstance(r, PoseFileError)}
    warned = {n: "; ".join(r.warnings) for n, r in sample.items() if not isinstance(r, PoseFileError) and r.warnings}
    name = f"pose files {split}"
    if len(bad) == len(sample):
        return Check(name, FAIL, f"none of the {len(sample)} pose files tried loads: {_examples(bad)}",
                     "re-extract the poses (pickles of keypoints (N,1,133,2) and scores (N,1,133))")
    if bad or warned:
        return Check(name, WARN, f"of {len(sample)} pose files loaded, {len(bad)} are unusable and will be skipped"
                     f"{': ' + _examples(bad) if bad else ''}; {len(warned)} have NaN/inf values"
                     f"{': ' + _examples(warned) if warned else ''}", "re-extract the files named")
    return Check(name, PASS, f"{len(sample)} pose files loaded as training would, all usable")


def check_videos(args, layout, splits):
    """--rgb_support: every labelled sample's video exists; a sample of them (the pose files loaded above)
    decodes, with at least as many frames as its pose file needs, and that pose file's hand keypoints are
    normalised (x/W, y/H) so they fit the frames. Bad videos are counted and named."""
    import numpy as np

    from uni_sign_ext.hand_crops import NORMALISED_RANGE
    from uni_sign_ext.pose import PoseFileError, read_pose_file
    from uni_sign_ext.video import VideoFileError, count_frames

    checks = []
    for split, (labels, poses, _) in splits.items():
        folder, poses_at = layout.video_folder(split), layout.pose_folder(split)
        missing = {n: "no video file" for n, e in labels.items()
                   if not os.path.isfile(os.path.join(folder, e["video_path"]))}
        bad = {}
        tried = [n for n, p in poses.items() if not isinstance(p, PoseFileError) and n not in missing]
        for name in tried:
            path = os.path.join(folder, labels[name]["video_path"])
            try:
                count, _ = count_frames(path)
            except VideoFileError as exc:
                bad[name] = f"{path}: {exc.reason}"
                continue
            if count < poses[name].clip_end:
                bad[name] = (f"{path}: {count} frames, but its pose file has {poses[name].clip_end}: video and pose "
                             "file do not match")
                continue
            pose_path = os.path.join(poses_at, pose_file_name(labels[name]["video_path"]))
            hands = read_pose_file(pose_path)[0][:, 91:133]
            hands = hands[np.isfinite(hands)]
            if hands.size and (hands.min() < NORMALISED_RANGE[0] or hands.max() > NORMALISED_RANGE[1]):
                bad[name] = (f"{pose_path}: hand keypoints up to {float(hands.max()):.1f}, not normalised (x/W, y/H): "
                             "they do not fit the video's frames")
        name = f"videos {split}"
        if missing and len(missing) == len(labels):
            checks.append(Check(name, FAIL, f"none of the {len(labels)} {split} samples has a video in {folder}",
                                "put the videos there (config.rgb_dirs, UNISIGN_ROOT), or drop --rgb_support"))
        elif missing or bad:
            listing = "; ".join(f"{n}: {r}" for n, r in list({**missing, **bad}.items())[:NAMES_SHOWN])
            checks.append(Check(name, WARN, f"{len(missing)} of {len(labels)} samples have no video in {folder}; "
                                f"of {len(tried)} videos decoded, {len(bad)} are unusable; these samples will be "
                                f"skipped: {listing}", "add or re-encode the videos named (H.264 mp4)"))
        else:
            checks.append(Check(name, PASS, f"all {len(labels)} samples have a video in {folder}; {len(tried)} "
                                "decoded, each with the frames its pose file needs"))
    return checks


def check_descriptions(args, splits):
    from uni_sign_ext.descriptions import DescriptionLoader, find_description_dir, sample_key
    from uni_sign_ext.pose import PoseFileError

    folder = find_description_dir(args.desc_dir, args.dataset)
    if folder is None:
        return [Check("description folder", FAIL, f"no folder for {args.dataset} under {args.desc_dir}",
                      f"put descriptions in {os.path.join(args.desc_dir, args.dataset)}/ or pass --desc_dir")]
    checks = [Check("description folder", PASS, str(folder))]
    problems, layout = {}, []
    # A description of a sample whose label entry is unusable is not "of no sample" (training does not say so).
    labelled = {sample_key(n) for labels, _, unusable in splits.values() for n in (*labels, *unusable)}
    for split, (labels, poses, _) in splits.items():
        loader = DescriptionLoader(folder, phase=split)
        layout += [p for p in loader.layout_problems if p not in layout]
        clip_ends = {n: p.clip_end for n, p in poses.items() if not isinstance(p, PoseFileError)}
        loaded = {name: loader.load(name, clip_ends.get(name))[0] for name in labels}
        problems.update(dict(loader.problems))
        described = sum(1 for d in loaded.values() if d)
        share = described / max(1, len(labels))
        status = PASS if described else WARN
        checks.append(Check(f"descriptions {split}", status,
                            f"{described} of {len(labels)} samples ({share:.0%}) have descriptions",
                            "" if described else "check the file names match the label names"))
        checks.append(alignment_coverage(split, poses, loaded))
    unknown = sorted(DescriptionLoader(folder).sample_ids() - labelled)
    if unknown:
        layout.append(f"{len(unknown)} description files match no labelled sample of any split "
                      f"(e.g. {', '.join(unknown[:NAMES_SHOWN])})")
    if layout:
        checks.append(Check("description layout", WARN, "; ".join(layout),
                            "rename or remove the files named: they are not used as you may expect"))
    if problems:
        listing = "; ".join(f"{path}: {reason}" for path, reason in sorted(problems.items()))
        checks.append(Check("description files", WARN, f"{len(problems)} files with problems (they train as "
                            f"'no descriptions' or lose the entries named): {listing}",
                            "fix or regenerate the files listed"))
    else:
        checks.append(Check("description files", PASS, "all description files parse"))
    return checks


def alignment_coverage(split, poses, loaded):
    """Share of sampled frames that are exact / interpolated / without text, on the loaded pose sample."""
    from uni_sign_ext.alignment import align_descriptions
    from uni_sign_ext.pose import PoseFileError

    exact = interpolated = nearest = none = 0
    for name, pose in poses.items():
        if isinstance(pose, PoseFileError):
            continue
        plan = align_descriptions(loaded[name], pose.frames)
        exact += int((plan.has_description > 0).sum())
        interpolated += int(((plan.left != plan.right) & (plan.left >= 0)).sum())
        nearest += int(((plan.left == plan.right) & (plan.left >= 0) & (plan.has_description == 0)).sum())
        none += int((plan.left < 0).sum())
    total = max(1, exact + interpolated + nearest + none)
    return Check(f"aligned frames {split}", PASS if exact + interpolated + nearest else WARN,
                 f"on {len(poses)} videos: {exact / total:.0%} exact, {interpolated / total:.0%} interpolated, "
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


def check_flags(args, check_supported):
    """check_supported: the training script's own refusal of flags it parses but does not run."""
    from uni_sign_ext.cli import check_description_args
    from uni_sign_ext.guards import check_numeric_flags

    checks = []
    for check in (check_supported, check_description_args, check_numeric_flags):
        try:
            check(args)
        except SystemExit as exc:
            checks.append(Check("flags", FAIL, str(exc), "change the flags as the message says"))
    if args.offload and args.zero_stage == 0:
        checks.append(Check("flags", FAIL, "--offload needs ZeRO stage 1, 2 or 3", "pass --zero_stage 2"))
    if args.finetune and not os.path.isfile(args.finetune):
        checks.append(Check("flags", FAIL, f"--finetune {args.finetune} does not exist", "fix the path"))
    elif args.finetune:
        checks.append(check_finetune_fusion(args))
    if args.fusion_checkpoint and not os.path.isfile(args.fusion_checkpoint):
        checks.append(Check("flags", FAIL, f"--fusion_checkpoint {args.fusion_checkpoint} does not exist",
                            "fix the path"))
    if args.eval and not args.finetune:
        checks.append(Check("flags", WARN, "--eval without --finetune evaluates untrained pose weights",
                            "pass --finetune CHECKPOINT"))
    return checks or [Check("flags", PASS, "flag combination is usable")]


def check_finetune_fusion(args):
    """The checkpoint's fusion weights fit --use_descriptions / --text_fusion_type (keys only: memory-mapped)."""
    import torch

    from uni_sign_ext.checkpoint import fusion_kind

    name = "checkpoint architecture"
    try:
        state = torch.load(args.finetune, map_location="cpu", weights_only=True, mmap=True)["model"]
        kind = fusion_kind(state)
    except Exception as exc:
        return Check(name, FAIL, f"--finetune {args.finetune} is not a readable {{'model': state_dict}} "
                                 f"checkpoint ({type(exc).__name__}: {exc})", "pass the right file")
    if kind and not args.use_descriptions:
        return Check(name, FAIL, f"--finetune {args.finetune} holds {kind} fusion weights",
                     f"add --use_descriptions --text_fusion_type {kind}")
    if kind and kind != args.text_fusion_type:
        return Check(name, FAIL, f"--finetune {args.finetune} holds {kind} fusion weights, not "
                                 f"{args.text_fusion_type}", f"pass --text_fusion_type {kind}")
    if args.use_descriptions and not kind:
        return Check(name, WARN, f"--finetune {args.finetune} has no fusion weights: the fusion starts fresh "
                                 "(identity at step 0)", "" if not args.eval else
                     "evaluate a checkpoint trained with --use_descriptions")
    return Check(name, PASS, f"--finetune {args.finetune} fits the architecture flags")


def check_output_folders(args):
    """The folders the run writes to exist or can be made, and are writable (checked, then left as found)."""
    checks = []
    folders = [("--output_dir", args.output_dir)]
    if args.use_descriptions:
        folders.append(("--feature_cache_dir", args.feature_cache_dir))
    for flag, folder in folders:
        if not folder:
            continue
        problem = _unwritable(folder)
        checks.append(Check(f"folder {flag}", FAIL if problem else PASS, problem or f"{folder} is writable",
                            f"pass a folder you can write to as {flag}" if problem else ""))
    return checks


def _unwritable(folder):
    """Why no file can be written in `folder` (without creating it), or ''."""
    import tempfile

    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{folder}: {existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return ""
    except OSError as exc:
        return f"{folder}: cannot write in {existing} ({exc.strerror or exc})"


def crashed(name, exc):
    return Check(name, FAIL, f"the check itself crashed: {type(exc).__name__}: {exc}",
                 "fix the cause named; please report the crash")


def isolated(name, check, *args):
    """Run one check → a list of Checks; a crash inside it becomes a failed check naming the error,
    and the report goes on."""
    try:
        result = check(*args)
    except Exception as exc:  # the checklist must always print its report
        return [crashed(name, exc)]
    return result if isinstance(result, list) else [result]


def run_checks(args, layout, check_supported):
    """layout: the dataset's DataLayout (from config.py); check_supported: the training script's flag refusal."""
    checks = []
    for name, check, check_args in [("packages", check_packages, ()), ("GPUs", check_gpus, (args,)),
                                    ("flags", check_flags, (args, check_supported)), ("folders", check_output_folders, (args,)),
                                    ("mT5 (translator)", check_mt5, (args.mt5_path, "translator"))]:
        checks += isolated(name, check, *check_args)
    try:
        label_checks, splits = check_labels_and_poses(args, layout)
    except Exception as exc:
        label_checks, splits = [crashed("labels", exc)], {}
    checks += label_checks
    if args.rgb_support:
        checks += isolated("videos", check_videos, args, layout, splits)
    if args.use_descriptions:
        if args.mt5_model and args.mt5_model != args.mt5_path:
            checks += isolated("mT5 (text encoder)", check_mt5, args.mt5_model, "text encoder")
        checks += isolated("descriptions", check_descriptions, args, splits)
        checks += isolated("feature cache", check_feature_cache, args)
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

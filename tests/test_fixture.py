"""The offline mini-world: upstream's formats and layout, a loadable tiny mT5, descriptions with signal."""
import gzip
import json
import pickle
import re
import time
from collections import Counter, defaultdict

import numpy as np
import pytest

from uni_sign_ext.fixture import build_mini_world, main

SPLITS = {"CSL_Daily": ("train", "dev", "test"), "How2Sign": ("train", "test")}
PER_SPLIT = 24


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return build_mini_world(tmp_path_factory.mktemp("fixture_world"), samples_per_split=PER_SPLIT, seed=0)


def read_labels(world, dataset, split):
    with gzip.open(world / "data" / dataset / f"labels.{split}", "rb") as f:
        return pickle.load(f)


def all_samples(world):
    """(dataset, split, label entry, pose file path, description file path) for every sample."""
    for dataset, splits in SPLITS.items():
        for split in splits:
            for entry in read_labels(world, dataset, split).values():
                stem = entry["video_path"][: -len(".mp4")]
                if dataset == "CSL_Daily":
                    pose = world / "dataset" / dataset / "pose_format" / f"{stem}.pkl"
                    desc = world / "description" / dataset / "split_data" / split / f"{entry['name']}.json"
                else:
                    pose = world / "dataset" / dataset / "pose_format" / split / f"{stem}.pkl"
                    desc = world / "description" / dataset / f"{entry['name'][: -len('.mp4')]}.json"
                yield dataset, split, entry, pose, desc


def read_pose(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def usable_range(pose):
    return pose.get("start", 0), pose.get("end", len(pose["keypoints"]))


def read_description(path):
    """(format, {frame: text}, [described start frames]) — segments cover every frame in [start, end]."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict):
        inner = doc.get("descriptions", doc)
        frames = {int(k): v for k, v in inner.items()}
        return ("wrapper" if "descriptions" in doc else "canonical"), frames, sorted(frames)
    if "frame" in doc[0]:
        return "frames", {e["frame"]: e["text"] for e in doc}, [e["frame"] for e in doc]
    covered = {f: e["text"] for e in doc for f in range(e["start"], e["end"] + 1)}
    return "segments", covered, [e["start"] for e in doc]


def test_labels(world):
    for dataset, splits in SPLITS.items():
        names = set()
        texts = {}
        for split in splits:
            labels = read_labels(world, dataset, split)
            assert len(labels) == PER_SPLIT
            for name, entry in labels.items():
                assert set(entry) == {"name", "gloss", "text", "video_path"} and entry["name"] == name
                assert entry["video_path"].endswith(".mp4")
                if dataset == "CSL_Daily":
                    assert re.fullmatch(r"S\d{6}_P\d{4}_T\d{2}", name) and entry["video_path"] == name + ".mp4"
                    assert isinstance(entry["gloss"], list) and entry["gloss"] and len(entry["text"]) <= 12
                else:
                    assert re.fullmatch(r".{11}_[\d_]+-\d+-rgb_front\.mp4", name) and entry["video_path"] == name
                    assert entry["gloss"] == "" and len(entry["text"].split()) <= 8
            assert not names & set(labels), "sample names must be unique across splits"
            names |= set(labels)
            texts[split] = Counter(e["text"] for e in labels.values())
        assert len(texts["train"]) == 8 and max(texts["train"].values()) >= 2  # few sentences, each seen often
        for split in splits[1:]:
            assert set(texts[split]) <= set(texts["train"])
    assert "你们好！" in {e["text"] for e in read_labels(world, "CSL_Daily", "train").values()}


def test_how2sign_splits_come_from_disjoint_real_entries(world):
    from uni_sign_ext.fixture import REAL_LABELS_DIR, read_labels as read_real_labels

    real = read_real_labels(REAL_LABELS_DIR / "How2Sign" / "labels.test")
    borrowed = {}
    for split in ("train", "test"):
        labels = read_labels(world, "How2Sign", split)
        # <real clip>_<repeat>-N-rgb_front.mp4 → the real entry it signs again
        origin = {name: re.sub(r"_\d+(-\d+-rgb_front\.mp4)$", r"\1", name) for name in labels}
        assert all(real[origin[name]]["text"] == entry["text"] for name, entry in labels.items())
        borrowed[split] = set(origin.values())
    assert not borrowed["train"] & borrowed["test"]


def test_pose_files(world):
    durations, clipped, weak_hands = [], 0, 0
    for dataset, split, entry, pose_path, _ in all_samples(world):
        pose = read_pose(pose_path)
        assert len(pose["keypoints"]) == len(pose["scores"])
        assert all(kp.shape == (1, 133, 2) and kp.dtype == np.float32 for kp in pose["keypoints"])
        assert all(sc.shape == (1, 133) and sc.dtype == np.float32 for sc in pose["scores"])
        kps = np.stack(pose["keypoints"])
        assert kps[..., 0].min() >= 0 and kps[..., 0].max() < 1280 and kps[..., 1].max() < 720
        start, end = usable_range(pose)
        if "start" in pose:
            clipped += 1
            assert 0 < start < end <= len(pose["keypoints"])
        durations.append(end - start)
        hands = np.stack(pose["scores"])[start:end, 0, 91:133].max(1) < 0.3
        weak_hands += hands.sum() >= 4
    durations = np.array(durations)
    assert (durations >= 16).all()
    assert (durations > 128).sum() >= 3
    assert ((durations <= 96).mean()) > 0.7
    assert clipped >= 3 and weak_hands >= 3


def hand_trajectory(pose):
    """Both wrists relative to the shoulders' midpoint, in shoulder widths, resampled to 24 steps."""
    start, end = usable_range(pose)
    kps = np.stack(pose["keypoints"])[start:end, 0]
    mid = (kps[:, 5] + kps[:, 6]) / 2
    width = np.linalg.norm(kps[:, 5] - kps[:, 6], axis=1).mean()
    wrists = (kps[:, [9, 10]] - mid[:, None]) / width
    steps = np.linspace(0, len(wrists) - 1, 24).round().astype(int)
    return wrists[steps].reshape(-1)


def test_motion_carries_the_sentence(world):
    by_text = defaultdict(list)
    for _, _, entry, pose_path, _ in all_samples(world):
        by_text[entry["text"]].append(hand_trajectory(read_pose(pose_path)))
    same = max(np.abs(t - ts[0]).mean() for ts in by_text.values() for t in ts)
    firsts = [ts[0] for ts in by_text.values()]
    different = min(np.abs(a - b).mean() for i, a in enumerate(firsts) for b in firsts[i + 1:])
    assert same < different


def test_tokenizer_and_model_round_trip(world):
    from transformers import MT5EncoderModel, MT5ForConditionalGeneration, T5Tokenizer

    path = world / "pretrained_weight" / "mt5-base"
    assert (path / "model.safetensors").is_file() and (path / "spiece.model").is_file()
    tokenizer = T5Tokenizer.from_pretrained(str(path), legacy=False)
    model = MT5ForConditionalGeneration.from_pretrained(str(path))
    encoder = MT5EncoderModel.from_pretrained(str(path))
    config = model.config
    assert (config.d_model, config.d_kv, config.num_heads, config.d_ff) == (768, 16, 4, 256)
    assert (config.num_layers, config.num_decoder_layers) == (1, 1)
    assert config.vocab_size == len(tokenizer)
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (0, 1, 0)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)

    ids = tokenizer("你们好").input_ids
    assert ids[-1] == 1 and 2 not in ids
    texts = [e["text"] for _, _, e, _, _ in all_samples(world)]
    texts += [t for *_, d in all_samples(world) if d.is_file() for t in read_description(d)[1].values()]
    for text in set(texts):
        assert tokenizer.unk_token_id not in tokenizer(text).input_ids, text
    # Like mt5-base's, the tokenizer applies NFKC: the full-width '！' comes back as '!'.
    assert tokenizer.decode(tokenizer("你们好！").input_ids, skip_special_tokens=True) == "你们好!"

    import torch

    batch = tokenizer(["你们好！"], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        out = model.generate(**batch, max_new_tokens=3, num_beams=2)
    assert hidden.shape[-1] == 768 and out.shape[0] == 1


def test_description_files(world):
    formats, missing, total = Counter(), 0, 0
    for dataset, split, entry, pose_path, desc_path in all_samples(world):
        total += 1
        if not desc_path.is_file():
            missing += 1
            continue
        fmt, frames, starts = read_description(desc_path)
        formats[dataset, fmt] += 1
        start, end = usable_range(read_pose(pose_path))
        assert frames and all(start <= f < end for f in frames), desc_path
        assert all(isinstance(t, str) and t for t in frames.values())
        gaps = np.diff(starts)
        assert (gaps >= 4).all() and (gaps <= 12).all()
    assert {fmt for (ds, fmt) in formats if ds == "CSL_Daily"} == {"canonical", "wrapper", "frames", "segments"}
    assert formats.keys() & {("How2Sign", f) for f in ("canonical", "wrapper", "frames", "segments")}
    assert 0.08 <= missing / total <= 0.22
    assert not list((world / "description" / "How2Sign").glob("*/"))  # How2Sign is flat


def test_description_files_load_with_the_project_loader(world):
    from uni_sign_ext.descriptions import DescriptionLoader

    loaders = {(ds, split): DescriptionLoader(world / "description" / ds, phase=split)
               for ds, splits in SPLITS.items() for split in splits}
    for dataset, split, entry, _, desc_path in all_samples(world):
        loader = loaders[dataset, split]
        loaded, _ = loader.load(entry["name"])
        assert loaded == (read_description(desc_path)[1] if desc_path.is_file() else {})
    assert all(not loader.problems for loader in loaders.values())


def test_descriptions_carry_the_sentence(world):
    """Same sentence → the same gesture vocabulary and the same first gesture; different sentences differ."""
    first, vocab = defaultdict(set), defaultdict(set)
    for dataset, _, entry, _, desc_path in all_samples(world):
        if desc_path.is_file():
            _, frames, starts = read_description(desc_path)
            first[dataset, entry["text"]].add(frames[starts[0]])
            vocab[dataset, entry["text"]].add(frozenset(frames.values()))
    assert all(len(texts) == 1 for texts in first.values())
    for dataset in SPLITS:
        firsts = [next(iter(t)) for (ds, _), t in first.items() if ds == dataset]
        assert len(set(firsts)) == len(firsts)
    assert all(len(set().union(*sets)) <= 4 for sets in vocab.values())  # a program has 2–4 gestures
    phrases = {t for sets in vocab.values() for s in sets for t in s}
    assert phrases <= {f"{subject} {verb}" for subject in ("right hand", "left hand") for verb in (
        "moves up", "moves down", "moves outward", "moves inward", "circles", "touches the chin")} | {
        f"both hands {verb}" for verb in ("move up", "move down", "move outward", "move inward", "circle",
                                          "touch the chin")}


def test_build_is_idempotent_and_deterministic(world, tmp_path, capsys):
    label = world / "data" / "CSL_Daily" / "labels.train"
    before = label.stat().st_mtime_ns
    started = time.time()
    assert build_mini_world(world, samples_per_split=PER_SPLIT, seed=0) == world
    main(["--out", str(world), "--samples-per-split", str(PER_SPLIT)])
    assert time.time() - started < 1 and label.stat().st_mtime_ns == before
    assert capsys.readouterr().out == ""

    again = build_mini_world(tmp_path / "again", samples_per_split=PER_SPLIT, seed=0)
    for rel in ["data/CSL_Daily/labels.train", "data/How2Sign/labels.test", "pretrained_weight/mt5-base/spiece.model",
                "pretrained_weight/mt5-base/model.safetensors"]:
        assert (again / rel).read_bytes() == (world / rel).read_bytes(), rel
    other = build_mini_world(tmp_path / "other", samples_per_split=4, seed=1)
    assert (other / "data/CSL_Daily/labels.train").read_bytes() != label.read_bytes()


def test_rebuild_with_other_parameters_leaves_no_stale_samples(tmp_path):
    build_mini_world(tmp_path, samples_per_split=6)
    build_mini_world(tmp_path, samples_per_split=3)
    assert len(list((tmp_path / "dataset" / "CSL_Daily" / "pose_format").iterdir())) == 9
    assert json.loads((tmp_path / ".complete").read_text())["samples_per_split"] == 3


@pytest.fixture(scope="module")
def informative_and_noise(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    return {kind: build_mini_world(root / kind, samples_per_split=PER_SPLIT, seed=0, kind=kind)
            for kind in ("informative", "noise")}


def test_informative_world_descriptions_tell_pairs_apart(informative_and_noise):
    """Sentences 2k and 2k+1 share one motion; only their descriptions (the handshape) differ."""
    world = informative_and_noise["informative"]
    programs, shapes = defaultdict(set), defaultdict(set)
    for dataset, _, entry, pose_path, desc_path in all_samples(world):
        if dataset == "CSL_Daily" and desc_path.is_file():
            texts = read_description(desc_path)[1].values()
            programs[entry["text"]].add(frozenset(t.rsplit(" with ", 1)[0] for t in texts))
            shapes[entry["text"]].add(frozenset(t.rsplit(" with ", 1)[1] for t in texts))
    assert all(len(s) == 1 for s in shapes.values()) and len(programs) == 8
    sentences = [e["text"] for e in read_labels(world, "CSL_Daily", "train").values()][:8]
    for a, b in zip(sentences[0::2], sentences[1::2]):
        assert shapes[a] != shapes[b] and len(a) == len(b)  # equal lengths: a coin toss between them scores alike
        assert set().union(*programs[a]) & set().union(*programs[b])  # the same gestures, described alike


def pose_bytes_by_sample(world, dataset, split):
    return [path.read_bytes() for d, sp, _, path, _ in all_samples(world) if (d, sp) == (dataset, split)]


def test_informative_pairs_share_one_pose_recording(informative_and_noise, world):
    """Only the descriptions tell a pair apart: samples k, k+1 (sentences 2j, 2j+1) have byte-equal pose files,
    so a pose-only model cannot memorise which member a training clip is (in the plain world every clip differs)."""
    for dataset, splits in SPLITS.items():
        for split in splits:
            poses = pose_bytes_by_sample(informative_and_noise["informative"], dataset, split)
            assert len(poses) >= 8 and all(a == b for a, b in zip(poses[0::2], poses[1::2])), (dataset, split)
            assert len(set(poses)) == len(poses) // 2
            plain = pose_bytes_by_sample(world, dataset, split)
            assert len(set(plain)) == len(plain)


def test_noise_world_has_distinct_motions_random_texts_and_the_informative_translator(informative_and_noise):
    """Pose-only tells every noise-world sentence apart (each has its own motion), the descriptions say nothing
    about the sample, and the translator and labels are the informative world's (same sentences)."""
    informative, noise = informative_and_noise["informative"], informative_and_noise["noise"]
    for name in ("data/CSL_Daily/labels.train", "pretrained_weight/mt5-base/model.safetensors"):
        assert (informative / name).read_bytes() == (noise / name).read_bytes(), name
    poses = pose_bytes_by_sample(noise, "CSL_Daily", "train")
    assert len(set(poses)) == len(poses)  # no twins: every clip its own recording
    programs = defaultdict(set)
    for dataset, _, entry, _, desc_path in all_samples(noise):
        if dataset == "CSL_Daily" and desc_path.is_file():
            programs[entry["text"]].update(t.rsplit(" with ", 1)[0] for t in read_description(desc_path)[1].values())
    assert len(programs) == 8 and all(len(gestures) > 6 for gestures in programs.values())  # random, not 2–4 gestures


def test_narrow_translator_starts_near_ln_v(informative_and_noise):
    import torch
    from transformers import MT5ForConditionalGeneration, T5Tokenizer

    path = informative_and_noise["informative"] / "pretrained_weight" / "mt5-base"
    model = MT5ForConditionalGeneration.from_pretrained(str(path))
    tokenizer = T5Tokenizer.from_pretrained(str(path), legacy=False)
    assert model.config.d_model == 128
    batch = tokenizer(["你们好！"], return_tensors="pt")
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss.item()
    assert abs(loss - np.log(len(tokenizer))) < 1, (loss, np.log(len(tokenizer)))  # a default init: ≈ 60

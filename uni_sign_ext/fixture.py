"""An offline mini-world in upstream's folder layout, for the demo and the tests.

    python -m uni_sign_ext.fixture --out mini_world [--samples-per-split 24] [--seed 0] [--kind plain]

Builds a tiny mT5 (random weights, d_model 768 like mt5-base, a SentencePiece tokenizer trained on the
spot), label files drawn from the real CSL-Daily (with glosses, for CSLR) and How2Sign label subsets shipped in
fixture_labels/, a tiny WLASL of isolated words for ISLR (fixture_wlasl.py), a tiny CSL-News for
pre-training (fixture_news.py), synthetic
pose files (133 COCO-WholeBody keypoints) whose motion follows a per-sentence "program" of gestures,
and description files that describe that same motion, in every accepted format and layout. Few
distinct short sentences, each signed several times, so that a few epochs can learn something.

--kind picks what the descriptions can tell that the poses cannot (the proxy for "descriptions help"):
- plain: each sentence has its own motion, and the descriptions describe it (they add nothing).
- informative: sentences come in pairs that share one motion; the descriptions also name the handshape
  (open palm / closed fist), which the synthetic hands do not show and which tells the pair apart. The
  two samples of a pair (k, k+1 in a split) share one pose recording, so no pose detail tells them apart.
  Its translator is narrower (d_model 128) with a small output layer, so its loss starts near ln V and
  ~150 CPU steps learn to read the poses.
- noise: the informative world's sentences and translator, but each sentence has its own motion (as in
  plain) and every description is a random phrase of the same vocabulary, unrelated to the sample. Pose-only
  tells every sentence apart here, so a fusion that lets the noise in can only lose; in the informative
  world's poses a pair is a coin toss for pose-only, and its score jumps between a few values with the seed.
"""
import argparse
import gzip
import io
import json
import os
import pickle
import random
import re
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

WORLD_VERSION = 8  # bump when the output changes, so old worlds are rebuilt
SENTENCES_PER_DATASET = 8
MAX_CSL_CHARS = 12
CSL_GREETING = "你们好！"  # always signed, so tokenizer("你们好") meets no unknown piece
MAX_H2S_WORDS = 8
ACTIONS = ("up", "down", "out", "in", "circle", "chin")
GESTURES = [(hand, action) for hand in ("right", "left", "both") for action in ACTIONS]
VERBS = {  # (one hand, both hands)
    "up": ("moves up", "move up"), "down": ("moves down", "move down"),
    "out": ("moves outward", "move outward"), "in": ("moves inward", "move inward"),
    "circle": ("circles", "circle"), "chin": ("touches the chin", "touch the chin"),
}
DESCRIPTION_FORMATS = ("canonical", "wrapper", "frames", "segments")
NO_DESCRIPTION_EVERY = 7  # one sample in 7 has no description file (~15 %)
GENERATED = ("data", "dataset", "description", "pretrained_weight")
KINDS = ("plain", "informative", "noise")
HANDSHAPES = ("with an open palm", "with a closed fist")  # pair member 0, 1 (informative, noise)
NARROW_HEAD_SCALE = 0.05
PROMPTS = ["Translate sign language video to Chinese: ", "Translate sign language video to English: "]


REAL_LABELS_DIR = Path(__file__).resolve().parent / "fixture_labels"  # where they come from: its README.md


def read_labels(path):
    with gzip.open(path, "rb") as f:
        return pickle.load(f)


def write_labels(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:  # same inputs, same bytes
        pickle.dump(labels, f)


def motion_program(text, index):
    """2–4 (hand, action) gestures that identify the sentence.

    The first gesture comes from the sentence's index, so up to 18 sentences of a world never share a
    program; the rest from a hash of the text.
    """
    rng = random.Random(zlib.crc32(text.encode()))
    return [GESTURES[index % len(GESTURES)]] + [rng.choice(GESTURES) for _ in range(rng.randint(1, 3))]


def describe(hand, action):
    one, both = VERBS[action]
    return f"both hands {both}" if hand == "both" else f"{hand} hand {one}"


def skeleton_template():
    """A frontal signer in a 1280x720 frame, (133, 2) pixels; the person's left is the image's right."""
    kp = np.zeros((133, 2), np.float32)
    kp[0:5] = [(640, 190), (655, 178), (625, 178), (675, 185), (605, 185)]     # nose, eyes, ears
    kp[5:11] = [(720, 290), (560, 290), (750, 400), (530, 400), (720, 480), (560, 480)]  # shoulders…wrists
    kp[11:13] = [(690, 600), (590, 600)]                                      # hips
    kp[13:23] = np.linspace((600, 720), (680, 720), 10)                       # legs, feet: below the frame
    t = np.linspace(0, np.pi, 17)
    kp[23:40] = np.stack([640 - 45 * np.cos(t), 185 + 60 * np.sin(t)], 1)    # jaw, chin at 31
    kp[40:45] = np.linspace((605, 160), (632, 158), 5)                        # brows
    kp[45:50] = np.linspace((648, 158), (675, 160), 5)
    kp[50:54] = np.linspace((640, 170), (640, 195), 4)                        # nose bridge, tip at 53
    kp[54:59] = np.linspace((630, 202), (650, 202), 5)
    e = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    kp[59:65] = np.stack([625 + 8 * np.cos(e), 176 + 3 * np.sin(e)], 1)       # eyes
    kp[65:71] = kp[59:65] + (30, 0)
    m, n = np.linspace(0, 2 * np.pi, 12, endpoint=False), np.linspace(0, 2 * np.pi, 8, endpoint=False)
    kp[71:83] = np.stack([640 + 16 * np.cos(m), 222 + 6 * np.sin(m)], 1)      # lips, outer
    kp[83:91] = np.stack([640 + 10 * np.cos(n), 222 + 3 * np.sin(n)], 1)      # lips, inner
    fingers = np.array([(0, 0)] + [(np.cos(a) * r, -np.sin(a) * r - 10)      # wrist, then 5 fingers × 4 joints
                                   for a in np.linspace(0.4, 2.7, 5) for r in (15, 28, 40, 50)], np.float32)
    kp[91:112] = kp[9] + fingers * (-1, 1)
    kp[112:133] = kp[10] + fingers
    return kp


TEMPLATE = skeleton_template()
CHIN = TEMPLATE[31]


def gesture_bounds(program, frames):
    """Frame where each gesture starts (and the clip's end): the clip is split evenly between gestures."""
    return np.linspace(0, frames, len(program) + 1).astype(int)


def hand_offsets(program, frames):
    """Per-frame (T, 2) displacement of each wrist from its rest position, following the program."""
    offsets = {"left": np.zeros((frames, 2), np.float32), "right": np.zeros((frames, 2), np.float32)}
    position = {"left": np.zeros(2, np.float32), "right": np.zeros(2, np.float32)}
    bounds = gesture_bounds(program, frames)
    for (hand, action), start, end in zip(program, bounds[:-1], bounds[1:]):
        if end == start:
            continue
        phase = np.linspace(0, 1, end - start, dtype=np.float32)[:, None]
        for side in (("left", "right") if hand == "both" else (hand,)):
            outward = 1 if side == "left" else -1  # the signer's left is the image's right
            wrist = TEMPLATE[9 if side == "left" else 10]
            if action == "circle":
                path = 60 * np.concatenate([outward * (1 - np.cos(2 * np.pi * phase)), np.sin(2 * np.pi * phase)], 1)
            elif action == "chin":  # there and back
                path = np.sin(np.pi * phase) * (CHIN + (outward * 20, 15) - wrist - position[side])
            else:
                step = {"up": (0, -120), "down": (0, 100), "out": (140 * outward, 0), "in": (-100 * outward, 0)}
                path = phase * np.array(step[action], np.float32)
            offsets[side][start:end] = position[side] + path
            position[side] = offsets[side][end - 1].copy()
    return offsets


def synth_pose(program, frames, rng, low_confidence_hands):
    """Keypoints (T, 1, 133, 2) and scores (T, 1, 133) of one clip, float32, in pixels."""
    offsets = hand_offsets(program, frames)
    kp = np.repeat(TEMPLATE[None], frames, 0)
    for side, wrist, elbow, hand in (("left", 9, 7, slice(91, 112)), ("right", 10, 8, slice(112, 133))):
        kp[:, wrist] += offsets[side]
        kp[:, elbow] += offsets[side] / 2
        kp[:, hand] += offsets[side][:, None]
    centre = np.float32((640, 360))
    kp = centre + (kp - centre) * rng.uniform(0.85, 1.15) + rng.uniform(-40, 40, 2)  # signer size, place
    kp += rng.normal(0, 1.5, kp.shape)                                                 # detector jitter
    kp = np.clip(kp, 0, (1279, 719))                                                   # detectors stay in frame
    scores = rng.uniform(0.6, 1.0, (frames, 133))
    scores[:, 13:23] = rng.uniform(0.0, 0.2, (frames, 10))  # legs and feet are out of the frame
    if low_confidence_hands:
        stretch = slice(frames // 4, frames // 2)
        scores[stretch, 91:133] = rng.uniform(0.0, 0.25, scores[stretch, 91:133].shape)
    return kp.astype(np.float32)[:, None], scores.astype(np.float32)[:, None]


def descriptions_for(program, frames, offset, rng, phrase=None):
    """{original frame index: text}: every 4–12 frames, `phrase` of the gesture under way at that frame
    (default: describe it)."""
    bounds = gesture_bounds(program, frames)
    described, frame = {}, int(rng.integers(0, 4))
    while frame < frames:
        gesture = min(int(np.searchsorted(bounds, frame, side="right")) - 1, len(program) - 1)
        described[offset + frame] = (phrase or (lambda g: describe(*g)))(program[gesture])
        frame += int(rng.integers(4, 13))
    return described


def phrase_for(kind, member, noise_rng):
    """How a world of `kind` phrases a gesture of a sentence that is pair member `member` (None: plain)."""
    if kind == "informative":
        return lambda gesture: f"{describe(*gesture)} {HANDSHAPES[member]}"
    if kind == "noise":  # its own stream, so the poses do not depend on the phrases drawn
        return lambda gesture: (f"{describe(*GESTURES[noise_rng.integers(len(GESTURES))])} "
                                f"{HANDSHAPES[noise_rng.integers(len(HANDSHAPES))]}")
    return None


def description_document(described, fmt):
    """The same descriptions in one of the accepted file formats (docs/descriptions.md)."""
    if fmt == "canonical":
        return {str(k): v for k, v in described.items()}
    if fmt == "wrapper":
        return {"descriptions": {str(k): v for k, v in described.items()}, "model": "fixture", "fps": 25}
    if fmt == "frames":
        return [{"frame": k, "text": v} for k, v in described.items()]
    frames = sorted(described)  # segments: each description holds until the frame before the next one
    ends = [f - 1 for f in frames[1:]] + [frames[-1]]
    return [{"start": s, "end": e, "text": described[s]} for s, e in zip(frames, ends)]


class WorldWriter:
    """Writes one dataset's pose and description files; a running sample count varies the cases.

    In the informative world pair member 1 is written right after member 0 and reuses its
    pose recording: the poses of a pair are then identical, not merely the same motion with its own size,
    place and jitter, which a pose-only model learned to memorise on the training split (it reached the
    label-smoothing floor, so a fusion added to a trained pose model had nothing left to learn on train).
    """

    def __init__(self, seed, kind="plain"):
        self.rng = np.random.default_rng(seed)
        self.noise_rng = np.random.default_rng(seed + 1000)
        self.kind = kind
        self.count = 0
        self.texts = set()
        self.last_recording = None  # (program, recording) of the sample written last

    def recording(self, i, program):
        """Keypoints, scores, and the clip's offset and length inside them, for sample number i."""
        frames = int(self.rng.integers(140, 181)) if i % 7 == 2 else int(self.rng.integers(16, 97))
        kps, scores = synth_pose(program, frames, self.rng, low_confidence_hands=i % 4 == 1)
        offset = 0
        if i % 5 == 0:  # a clip inside a longer recording: usable frames start…end-1
            offset, tail = int(self.rng.integers(3, 20)), int(self.rng.integers(1, 10))
            pad_k, pad_s = synth_pose(program, offset + tail, self.rng, False)
            kps = np.concatenate([pad_k[:offset], kps, pad_k[offset:]])
            scores = np.concatenate([pad_s[:offset], scores, pad_s[offset:]])
        return kps, scores, offset, frames

    def sample(self, name, video_path, entry, program, pose_dir, desc_dir, member=0):
        """Pose file and (usually) description file of one sample; returns its label entry."""
        i = self.count
        self.count += 1
        if self.kind == "informative" and member == 1:
            partner_program, recording = self.last_recording
            assert partner_program == program, "pair member 1 must follow its partner"
        else:
            recording = self.recording(i, program)
        self.last_recording = program, recording
        kps, scores, offset, frames = recording
        pose = {"keypoints": list(kps), "scores": list(scores)}
        if offset:
            pose.update(start=offset, end=offset + frames)
        pose_dir.mkdir(parents=True, exist_ok=True)
        with open(pose_dir / (os.path.splitext(video_path)[0] + ".pkl"), "wb") as f:
            pickle.dump(pose, f)
        if i % NO_DESCRIPTION_EVERY != 3:
            described = descriptions_for(program, frames, offset, self.rng,
                                         phrase_for(self.kind, member, self.noise_rng))
            self.texts.update(described.values())
            document = description_document(described, DESCRIPTION_FORMATS[i % len(DESCRIPTION_FORMATS)])
            desc_dir.mkdir(parents=True, exist_ok=True)
            (desc_dir / (os.path.splitext(name)[0] + ".json")).write_text(
                json.dumps(document, ensure_ascii=False), encoding="utf-8")
        return {"name": name, "gloss": entry["gloss"], "text": entry["text"], "video_path": video_path}


def distinct_texts(entries, keep, rng, count):
    """`count` distinct texts passing `keep`, drawn with `rng`: {text: [its real entries]}."""
    by_text = {}
    for entry in entries:
        if keep(entry["text"]):
            by_text.setdefault(entry["text"], []).append(entry)
    return {t: by_text[t] for t in rng.sample(sorted(by_text), count)}


def program_of(texts, s, kind):
    """Sentence s's motion program: shared with its pair in the informative world, else its own."""
    if kind == "informative":
        return motion_program(texts[s - s % 2], s // 2)
    return motion_program(texts[s], s)


def equal_length_pairs(entries, rng):
    """8 short sentences, as 4 pairs of equal length (sentences 2k, 2k+1).

    A model that cannot tell a pair apart names one of the two; with equal lengths its BLEU is the same
    whichever it names, so pose-only scores do not hinge on that coin toss (measured: ±9 BLEU-4 without).
    """
    by_length = {}
    for entry in entries:
        if len(entry["text"]) <= MAX_CSL_CHARS and entry["text"] != CSL_GREETING:
            by_length.setdefault(len(entry["text"]), {}).setdefault(entry["text"], entry)
    lengths = rng.sample(sorted(n for n, texts in by_length.items() if len(texts) >= 2), SENTENCES_PER_DATASET // 2)
    return [by_length[n][t] for n in lengths for t in rng.sample(sorted(by_length[n]), 2)]


def build_csl_daily(root, labels_dir, per_split, seed, kind="plain"):
    """CSL_Daily: 8 short sentences of the real train split (always 你们好！), signed in every split.

    The real dev/test splits share (almost) no sentence with train, so our dev/test reuse the train
    sentences and gloss lists: that is what lets the demo learn. Sample names keep the real sentence
    id: S000020_P0007_T01 (T = split number).
    """
    real = read_labels(labels_dir / "CSL_Daily" / "labels.train")
    greeting = [e for e in real.values() if e["text"] == CSL_GREETING][:1]
    picked = distinct_texts(real.values(), lambda t: len(t) <= MAX_CSL_CHARS and t != CSL_GREETING,
                            random.Random(seed), SENTENCES_PER_DATASET - len(greeting))
    sentences = greeting + [entries[0] for entries in picked.values()]
    if kind != "plain":
        sentences = equal_length_pairs(real.values(), random.Random(seed))
    texts = [s["text"] for s in sentences]
    writer = WorldWriter(seed, kind)
    for t, split in enumerate(("train", "dev", "test")):
        labels = {}
        # dev only picks the best epoch; a studied world keeps it at one sample per sentence (eval is costly)
        for k in range(len(sentences) if split == "dev" and kind != "plain" else per_split):
            s = k % len(sentences)
            name = f"{sentences[s]['name'][:7]}_P{k:04d}_T{t:02d}"
            labels[name] = writer.sample(name, name + ".mp4", sentences[s], program_of(texts, s, kind),
                                         root / "dataset" / "CSL_Daily" / "pose_format",
                                         root / "description" / "CSL_Daily" / "split_data" / split, s % 2)
        write_labels(root / "data" / "CSL_Daily" / f"labels.{split}", labels)
    return texts, writer.texts


def build_how2sign(root, labels_dir, per_split, seed, kind="plain"):
    """How2Sign: train and test from two disjoint sets of entries of the one real (test) label file.

    The 8 short sentences each have at least two real entries (clips); alternate entries go to train
    and to test, so both splits sign the same sentences. A clip signed again gets a repeat number:
    real -fZc293MpJk_0-1-rgb_front.mp4 → -fZc293MpJk_0_2-1-rgb_front.mp4 (the real file has such names).
    """
    real = read_labels(labels_dir / "How2Sign" / "labels.test")
    counts = Counter(entry["text"] for entry in real.values())
    picked = distinct_texts(real.values(), lambda t: t.isascii() and len(t.split()) <= MAX_H2S_WORDS
                            and counts[t] >= 2, random.Random(seed + 1), SENTENCES_PER_DATASET)
    texts = list(picked)
    pools = {"train": [entries[0::2] for entries in picked.values()],
             "test": [entries[1::2] for entries in picked.values()]}
    writer = WorldWriter(seed + 1, kind)
    for split, pool in pools.items():
        labels = {}
        for k in range(per_split):
            s, repeat = k % len(texts), k // len(texts)
            entry = pool[s][repeat % len(pool[s])]
            clip, tail = re.fullmatch(r"(.+)(-\d+-rgb_front\.mp4)", entry["name"]).groups()
            video = f"{clip}_{repeat}{tail}"
            labels[video] = writer.sample(video, video, entry, program_of(texts, s, kind),
                                          root / "dataset" / "How2Sign" / "pose_format" / split,
                                          root / "description" / "How2Sign", s % 2)
        write_labels(root / "data" / "How2Sign" / f"labels.{split}", labels)
    return texts, writer.texts


def build_tiny_mt5(folder, texts, seed, narrow=False):
    """A random-weight mT5 and a tokenizer trained on the world's texts: mt5-base's width (768), or
    `narrow` (d_model 128; the output layer at 1/20 of its default init, so the first loss is ≈ ln V).

    Shrinking every weight instead (initializer_factor) also starts at ln V but leaves the cross-attention
    near zero, where the translator took hundreds of steps to start reading its input at all."""
    import sentencepiece as spm
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()  # not model_prefix: that would write the folder's path into the model's bytes
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=400,
                                   character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, model_type="unigram", num_threads=1, minloglevel=2)
    (folder / "spiece.model").write_bytes(model.getvalue())
    tokenizer = T5Tokenizer(str(folder / "spiece.model"), legacy=False, extra_ids=0)
    tokenizer.save_pretrained(folder)
    size = dict(d_model=128, d_kv=32) if narrow else dict(d_model=768, d_kv=16)
    config = MT5Config(vocab_size=len(tokenizer), num_heads=4, d_ff=256, num_layers=1, num_decoder_layers=1,
                       decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, tie_word_embeddings=False, **size)
    torch.manual_seed(seed)
    model = MT5ForConditionalGeneration(config)
    if narrow:
        with torch.no_grad():
            model.lm_head.weight.mul_(NARROW_HEAD_SCALE)
    model.save_pretrained(folder, safe_serialization=True)


def build_mini_world(out_dir, samples_per_split=24, seed=0, kind="plain", videos=False):
    """Build the mini-world under out_dir and return its path (at once if built with these parameters).

    `videos`: also CSL_Daily's and CSL-News's mp4 files for --rgb_support, with their pose files normalised
    (fixture_video.py)."""
    if kind not in KINDS:
        raise SystemExit(f"--kind {kind!r} is not a mini-world kind; use one of {', '.join(KINDS)}.")
    root = Path(out_dir)
    params = {"samples_per_split": samples_per_split, "seed": seed, "version": WORLD_VERSION}
    if kind != "plain":  # a plain world's marker is unchanged, so existing worlds are not rebuilt
        params["kind"] = kind
    if videos:
        params["videos"] = True
    marker = root / ".complete"
    if marker.is_file():
        if json.loads(marker.read_text()) == params:
            return root
        marker.unlink()  # ours, built otherwise: start clean so no stale sample stays behind
        for sub in GENERATED:
            shutil.rmtree(root / sub, ignore_errors=True)
    started = time.time()
    labels_dir = REAL_LABELS_DIR
    print(f"[mini-world] building {root} ({kind}, {samples_per_split} samples per split, seed {seed})", flush=True)
    csl_sentences, csl_descriptions = build_csl_daily(root, labels_dir, samples_per_split, seed, kind)
    h2s_sentences, h2s_descriptions = build_how2sign(root, labels_dir, samples_per_split, seed, kind)
    from uni_sign_ext.fixture_wlasl import build_wlasl  # it builds on this module

    build_wlasl(root, samples_per_split, seed)  # its words are in the sentences' alphabet: not in the corpus
    from uni_sign_ext.fixture_news import build_csl_news

    build_csl_news(root, csl_sentences, samples_per_split, seed)  # CSL_Daily's sentences: not in the corpus twice
    if videos:
        from uni_sign_ext.fixture_video import build_videos

        build_videos(root)
    print(f"[mini-world] labels, poses, descriptions{', videos' if videos else ''} written ({time.time() - started:.1f}s); "
          "training the tokenizer, saving the tiny mT5", flush=True)
    descriptions = csl_descriptions | h2s_descriptions
    if kind != "plain":  # every phrase the kind can say: informative and noise worlds get the same translator
        descriptions = {f"{describe(*gesture)} {shape}" for gesture in GESTURES for shape in HANDSHAPES}
    corpus = csl_sentences + h2s_sentences + sorted(descriptions) + PROMPTS
    build_tiny_mt5(root / "pretrained_weight" / "mt5-base", corpus, seed, narrow=kind != "plain")
    marker.write_text(json.dumps(params))
    print(f"[mini-world] done in {time.time() - started:.1f}s", flush=True)
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples-per-split", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=KINDS, default="plain")
    parser.add_argument("--videos", action="store_true", help="also CSL_Daily's and CSL-News's videos, for --rgb_support")
    args = parser.parse_args(argv)
    build_mini_world(args.out, args.samples_per_split, args.seed, args.kind, args.videos)


if __name__ == "__main__":
    main()

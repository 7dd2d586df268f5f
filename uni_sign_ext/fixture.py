"""An offline mini-world in upstream's folder layout, for the demo and the tests.

    python -m uni_sign_ext.fixture --out mini_world [--samples-per-split 24] [--seed 0]

Builds a tiny mT5 (random weights, d_model 768 like mt5-base, a SentencePiece tokenizer trained on
the spot), label files drawn from the real CSL-Daily and How2Sign labels in shared/data/labels,
synthetic pose files (133 COCO-WholeBody keypoints) whose motion follows a per-sentence "program" of
gestures, and description files that describe that motion, in every accepted format and layout.
"""
import argparse
import gzip
import json
import os
import pickle
import random
import time
from pathlib import Path

import numpy as np

SENTENCES_PER_DATASET = 8
MAX_CSL_CHARS = 12
MAX_H2S_WORDS = 8
HANDS = ("left", "right", "both")
ACTIONS = {  # displacement of the hand over a gesture, in pixels (x, y); "circle" and "chin" are special
    "up": (0, -120), "down": (0, 120), "out": (140, 0), "in": (-140, 0), "circle": None, "chin": None,
}
PHRASES = {"up": "moves up", "down": "moves down", "out": "moves outward", "in": "moves inward",
           "circle": "draws a circle", "chin": "touches the chin"}
DESCRIPTION_FORMATS = ("canonical", "wrapper", "frames", "segments")
NO_DESCRIPTION_EVERY = 7  # one sample in 7 has no description file (~15 %)


def shared_labels_dir():
    env = os.environ.get("UNISIGN_SHARED_LABELS")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "labels"
    if not (folder / "CSL_Daily" / "labels.train").is_file():
        raise SystemExit(f"real label files not found in {folder} (expected CSL_Daily/labels.train and "
                         "How2Sign/labels.test); set UNISIGN_SHARED_LABELS to the shared/data/labels folder")
    return folder


def read_labels(path):
    with gzip.open(path, "rb") as f:
        return pickle.load(f)


def write_labels(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: same inputs, same bytes
        pickle.dump(labels, f)


def pick_sentences(labels, rng, short):
    """A few distinct short sentences, each with one real label entry to borrow its gloss from."""
    by_text = {}
    for entry in labels.values():
        if short(entry["text"]):
            by_text.setdefault(entry["text"], entry)
    texts = rng.sample(sorted(by_text), SENTENCES_PER_DATASET)
    return [by_text[t] for t in texts]


def motion_program(sentence_index):
    """2–4 (hand, action) gestures, fixed per sentence so the motion carries the sentence's identity."""
    rng = random.Random(1000 + sentence_index)
    return [(rng.choice(HANDS), rng.choice(sorted(ACTIONS))) for _ in range(2 + sentence_index % 3)]


def skeleton_template():
    """A frontal upper body in a 1280x720 frame: (133, 2) pixel coordinates."""
    kp = np.zeros((133, 2), np.float32)
    kp[0] = (640, 200)                                       # nose
    kp[1:5] = [(625, 188), (655, 188), (605, 195), (675, 195)]  # eyes, ears
    kp[5:11] = [(560, 300), (720, 300), (530, 400), (750, 400), (560, 470), (720, 470)]  # shoulders…wrists
    kp[11:23] = (640, 650)                                    # hips, legs, feet: off the bottom of the crop
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    kp[23:91] = np.stack([640 + 55 * np.cos(angles), 210 + 70 * np.sin(angles)], 1)  # face contour/features
    fingers = np.array([(0, 0)] + [(np.cos(a) * r, -np.sin(a) * r - 10)
                                   for a in np.linspace(0.4, 2.7, 5) for r in (15, 28, 40, 50)])
    kp[91:112] = kp[9] + fingers * [-1, 1]                   # left hand around the left wrist
    kp[112:133] = kp[10] + fingers                           # right hand around the right wrist
    return kp


def hand_offsets(program, frames):
    """Per-frame (T, 2) displacement of each hand following the gesture program."""
    offsets = {"left": np.zeros((frames, 2), np.float32), "right": np.zeros((frames, 2), np.float32)}
    bounds = np.linspace(0, frames, len(program) + 1).astype(int)
    position = {"left": np.zeros(2, np.float32), "right": np.zeros(2, np.float32)}
    for (hand, action), start, end in zip(program, bounds[:-1], bounds[1:]):
        phase = np.linspace(0, 1, max(1, end - start), dtype=np.float32)[:, None]
        for side in (("left", "right") if hand == "both" else (hand,)):
            sign = -1 if side == "left" else 1
            if action == "circle":
                path = 60 * np.concatenate([np.cos(2 * np.pi * phase) - 1, np.sin(2 * np.pi * phase)], 1)
            elif action == "chin":
                target = np.array([80 * -sign, -240], np.float32) - position[side]
                path = np.sin(np.pi * phase) * target
            else:
                dx, dy = ACTIONS[action]
                path = phase * np.array([dx * sign, dy], np.float32)
            offsets[side][start:end] = position[side] + path
            position[side] = offsets[side][end - 1].copy()
    return offsets, bounds


def synth_pose(program, frames, rng, low_confidence_hands):
    """Keypoints (T, 1, 133, 2) and scores (T, 1, 133) for one clip."""
    kp = np.repeat(skeleton_template()[None], frames, 0)
    offsets, _ = hand_offsets(program, frames)
    kp[:, 9] += offsets["left"]
    kp[:, 91:112] += offsets["left"][:, None]
    kp[:, 7] += offsets["left"] / 2
    kp[:, 10] += offsets["right"]
    kp[:, 112:133] += offsets["right"][:, None]
    kp[:, 8] += offsets["right"] / 2
    kp += rng.normal(0, 1.5, kp.shape).astype(np.float32) + rng.uniform(-20, 20, 2).astype(np.float32)
    scores = rng.uniform(0.6, 1.0, (frames, 133)).astype(np.float32)
    scores[:, 11:23] = rng.uniform(0.0, 0.2, (frames, 12))
    if low_confidence_hands:
        stretch = slice(frames // 4, frames // 2)
        scores[stretch, 91:133] = rng.uniform(0.0, 0.25, scores[stretch, 91:133].shape)
    return kp[:, None], scores[:, None]


def descriptions_for(program, frames, offset, rng):
    """{original frame: text}: a description every 4–12 frames, saying what the gesture then does."""
    _, bounds = hand_offsets(program, frames)
    described, frame = {}, int(rng.integers(0, 4))
    while frame < frames:
        gesture = min(np.searchsorted(bounds, frame, side="right") - 1, len(program) - 1)
        hand, action = program[gesture]
        subject = "both hands" if hand == "both" else f"{hand} hand"
        described[frame + offset] = f"{subject} {PHRASES[action]}"
        frame += int(rng.integers(4, 13))
    return described


def description_document(described, fmt):
    if fmt == "canonical":
        return {str(k): v for k, v in described.items()}
    if fmt == "wrapper":
        return {"descriptions": {str(k): v for k, v in described.items()}, "model": "mini-world", "fps": 25}
    if fmt == "frames":
        return [{"frame": k, "text": v} for k, v in described.items()]
    frames = sorted(described)  # segments: each description holds until the next one
    return [{"start": f, "end": (frames[i + 1] - 1 if i + 1 < len(frames) else f), "text": described[f]}
            for i, f in enumerate(frames)]


class WorldWriter:
    """Writes one dataset's samples: labels, poses, descriptions."""

    def __init__(self, root, dataset, seed):
        self.root, self.dataset = root, dataset
        self.rng = np.random.default_rng(seed)
        self.count = 0
        self.texts = []

    def sample(self, split, name, video_path, entry, sentence_index, pose_dir, desc_dir):
        i = self.count
        self.count += 1
        program = motion_program(sentence_index)
        frames = int(self.rng.integers(140, 181)) if i % 7 == 2 else int(self.rng.integers(16, 97))
        kps, scores = synth_pose(program, frames, self.rng, low_confidence_hands=i % 4 == 1)
        pose = {"keypoints": list(kps), "scores": list(scores)}
        offset = 0
        if i % 5 == 0:  # a clip inside a longer recording: usable frames start…end-1
            offset, tail = int(self.rng.integers(3, 20)), int(self.rng.integers(0, 10))
            pad_k, pad_s = synth_pose(program, offset + tail, self.rng, False)
            pose = {"keypoints": list(pad_k[:offset]) + list(kps) + list(pad_k[offset:]),
                    "scores": list(pad_s[:offset]) + list(scores) + list(pad_s[offset:]),
                    "start": offset, "end": offset + frames}
        pose_dir.mkdir(parents=True, exist_ok=True)
        with open(pose_dir / (os.path.splitext(video_path)[0] + ".pkl"), "wb") as f:
            pickle.dump(pose, f)
        if i % NO_DESCRIPTION_EVERY != 3:
            described = descriptions_for(program, frames, offset, self.rng)
            self.texts += described.values()
            desc_dir.mkdir(parents=True, exist_ok=True)
            document = description_document(described, DESCRIPTION_FORMATS[i % len(DESCRIPTION_FORMATS)])
            (desc_dir / (os.path.splitext(name)[0] + ".json")).write_text(json.dumps(document, ensure_ascii=False))
        return {"name": name, "gloss": entry["gloss"], "text": entry["text"], "video_path": video_path}


def build_csl_daily(root, labels_dir, per_split, seed):
    real = read_labels(labels_dir / "CSL_Daily" / "labels.train")
    sentences = pick_sentences(real, random.Random(seed), lambda t: len(t) <= MAX_CSL_CHARS)
    writer = WorldWriter(root, "CSL_Daily", seed)
    for split in ("train", "dev", "test"):
        labels = {}
        for k in range(per_split):
            s = k % len(sentences)
            name = f"S{900000 + s:06d}_P{k:04d}_T{('train', 'dev', 'test').index(split):02d}"
            labels[name] = writer.sample(split, name, name + ".mp4", sentences[s], s,
                                         root / "dataset" / "CSL_Daily" / "pose_format",
                                         root / "description" / "CSL_Daily" / "split_data" / split)
        write_labels(root / "data" / "CSL_Daily" / f"labels.{split}", labels)
    return [s["text"] for s in sentences], writer.texts


def build_how2sign(root, labels_dir, per_split, seed):
    real = read_labels(labels_dir / "How2Sign" / "labels.test")
    sentences = pick_sentences(real, random.Random(seed + 1), lambda t: len(t.split()) <= MAX_H2S_WORDS)
    writer = WorldWriter(root, "How2Sign", seed + 1)
    id_rng = random.Random(seed + 2)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for split in ("train", "test"):
        labels = {}
        for k in range(per_split):
            s = k % len(sentences)
            video = "".join(id_rng.choice(alphabet) for _ in range(11)) + f"_{k}-1-rgb_front.mp4"
            labels[video] = writer.sample(split, video, video, sentences[s], s,
                                          root / "dataset" / "How2Sign" / "pose_format" / split,
                                          root / "description" / "How2Sign")
        write_labels(root / "data" / "How2Sign" / f"labels.{split}", labels)
    return [s["text"] for s in sentences], writer.texts


def build_tiny_mt5(folder, texts, seed):
    """A random-weight mT5 with mt5-base's width (768) and a tokenizer trained on the world's texts."""
    import sentencepiece as spm
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = texts + ["Translate sign language video to Chinese: ", "Translate sign language video to English: "]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus * 3), model_prefix=str(folder / "spiece"),
                                   vocab_size=400, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, hard_vocab_limit=False, model_type="unigram", minloglevel=2)
    (folder / "spiece.vocab").unlink()
    tokenizer = T5Tokenizer(str(folder / "spiece.model"), legacy=False, extra_ids=0)
    tokenizer.save_pretrained(folder)
    config = MT5Config(vocab_size=len(tokenizer), d_model=768, d_kv=16, num_heads=4, d_ff=256, num_layers=1,
                       num_decoder_layers=1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                       initializer_factor=0.05, tie_word_embeddings=False)
    torch.manual_seed(seed)
    MT5ForConditionalGeneration(config).save_pretrained(folder)


def build_mini_world(out_dir, samples_per_split=24, seed=0):
    """Build (or reuse, when already built with the same parameters) the mini-world under out_dir."""
    root = Path(out_dir)
    params = {"samples_per_split": samples_per_split, "seed": seed, "version": 1}
    marker = root / ".complete"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    started = time.time()
    labels_dir = shared_labels_dir()
    print(f"[mini-world] building {root} ({samples_per_split} samples per split)", flush=True)
    csl_sentences, csl_descriptions = build_csl_daily(root, labels_dir, samples_per_split, seed)
    h2s_sentences, h2s_descriptions = build_how2sign(root, labels_dir, samples_per_split, seed)
    print("[mini-world] labels, poses and descriptions written; training the tokenizer and tiny mT5", flush=True)
    build_tiny_mt5(root / "pretrained_weight" / "mt5-base",
                   csl_sentences + h2s_sentences + sorted(set(csl_descriptions + h2s_descriptions)), seed)
    marker.write_text(json.dumps(params))
    print(f"[mini-world] done in {time.time() - started:.1f}s", flush=True)
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples-per-split", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_mini_world(args.out, args.samples_per_split, args.seed)


if __name__ == "__main__":
    main()

"""Training-step time and peak memory of description fusion vs the pose-only baseline.

Variants (each measured in its own process so peak memory is its own):
  baseline   — upstream model, no descriptions
  cached     — fusion, text features looked up from a filled feature cache
  uncached   — fusion, the batch's unique texts encoded by the frozen encoder every step
  per_frame  — reference copy of the user's sketch: one encoder call per frame (B·T calls per step)
plus beam-search evaluation speed with and without fusion, and the dataset's samples/s on the mini-world.

    python bench/benchmark.py                 # mT5-base size on a GPU; writes bench/results/<device>.json/.md
    python bench/benchmark.py --size small    # reduced size for a CPU run (marked as such in the results)
"""
import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {  # mt5-base's shape; "small" keeps d_model 768 (the pose projection's width) but fewer layers
    "base": dict(d_model=768, d_kv=64, num_heads=12, d_ff=2048, num_layers=12, num_decoder_layers=12,
                 vocab_size=250112),
    "small": dict(d_model=768, d_kv=64, num_heads=12, d_ff=2048, num_layers=2, num_decoder_layers=2,
                  vocab_size=32128),
}
PARTS = {"body": 9, "left": 21, "right": 21, "face_all": 18}
HANDS, MOVES, PLACES = ["left hand", "right hand", "both hands"], ["moves up", "moves down", "circles",
                                                                  "taps", "opens", "closes"], \
    ["near the chin", "at chest height", "beside the head", "in front of the body"]


def description_texts(rng):
    return f"{rng.choice(HANDS)} {rng.choice(MOVES)} {rng.choice(PLACES)}"


def make_mt5(folder, size):
    """A random-weight mT5 of the given size with a SentencePiece tokenizer trained on the spot."""
    import sentencepiece as spm
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    rng = random.Random(0)
    sentences = [description_texts(rng) for _ in range(2000)] + ["Translate sign language video to English: "]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_prefix=str(folder / "spiece"),
                                   vocab_size=200, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    T5Tokenizer(str(folder / "spiece.model"), legacy=False, extra_ids=0).save_pretrained(folder)
    config = MT5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **SIZES[size])
    torch.manual_seed(0)
    MT5ForConditionalGeneration(config).save_pretrained(folder)


def synthetic_batch(batch, frames, rng):
    """Pose parts, target sentences, and per video a new description every 8–16 frames."""
    src = {part: torch.rand(batch, frames, nodes, 3) * 2 - 1 for part, nodes in PARTS.items()}
    src["attention_mask"] = torch.ones(batch, frames, dtype=torch.long)
    per_frame = []
    for _ in range(batch):
        texts, frame = [], 0
        while frame < frames:
            span = rng.randint(8, 16)
            texts += [description_texts(rng)] * span
            frame += span
        per_frame.append(texts[:frames])
    tgt = {"gt_sentence": [" ".join(description_texts(rng) for _ in range(2)) for _ in range(batch)],
           "gt_gloss": [""] * batch}
    return src, tgt, per_frame


def batch_plan(per_frame):
    """Exact-match plan over the batch's unique texts (what collate produces)."""
    unique = sorted({t for video in per_frame for t in video})
    index = {t: i for i, t in enumerate(unique)}
    ids = torch.tensor([[index[t] for t in video] for video in per_frame])
    per_video = [sorted(set(video.tolist())) for video in ids]
    video_texts = torch.full((len(ids), max(map(len, per_video))), -1)
    for row, texts in enumerate(per_video):
        video_texts[row, :len(texts)] = torch.tensor(texts)
    return unique, {"desc_left": ids, "desc_right": ids.clone(), "desc_weight": torch.zeros(ids.shape),
                    "has_description": torch.ones(ids.shape), "desc_video_texts": video_texts}


def measure(args):
    """One variant in this process: median step time and peak memory."""
    from models import Uni_Sign
    from utils import get_args_parser
    from uni_sign_ext.feature_cache import TextFeatureProvider
    from uni_sign_ext.text_encoder import FrozenTextEncoder

    device = torch.device(args.device)
    fusion = args.variant != "baseline"
    flags = ["--mt5_path", args.mt5, "--dataset", "How2Sign", "--text_dropout_p", "0"]
    model_args = get_args_parser().parse_args(flags + (["--use_descriptions"] if fusion else []))
    rng = random.Random(0)
    batches = [synthetic_batch(args.batch, args.frames, rng) for _ in range(4)]
    provider = encoder = None
    all_texts = sorted({t for _, _, per_frame in batches for video in per_frame for t in video})
    if args.variant == "fill_cache":
        return TextFeatureProvider(args.mt5, cache_dir=args.cache, dataset="bench").warm(all_texts, progress=False)
    model = Uni_Sign(model_args).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    if args.variant == "cached":
        provider = TextFeatureProvider(args.mt5, cache_dir=args.cache, dataset="bench", device=args.device)
    elif args.variant in ("uncached", "per_frame"):
        encoder = FrozenTextEncoder(args.mt5, device=args.device)

    def text_features(per_frame):
        unique, plan = batch_plan(per_frame)
        if args.variant == "cached":
            return unique, plan, provider(unique)
        if args.variant == "uncached":
            return unique, plan, encoder.encode(unique)
        # The user's sketch: encode every frame's text on its own, B·T encoder calls.
        feats = torch.stack([encoder.encode([t])[0] for video in per_frame for t in video])
        ids = torch.arange(len(feats)).view(len(per_frame), -1)
        plan.update(desc_left=ids, desc_right=ids.clone())
        return unique, plan, feats

    def step(i):
        src, tgt, per_frame = batches[i % len(batches)]
        src = {k: v.to(device) for k, v in src.items()}
        if fusion:
            _, plan, feats = text_features(per_frame)
            src.update({k: v.to(device) for k, v in plan.items()}, text_features=feats.to(device))
        with autocast:
            loss = model(src, tgt)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    result = {"step_s": statistics.median(times), "steps": len(times)}
    if provider is not None:
        result["encoder_loaded"] = provider.encoder_loaded
    result["peak_mib"] = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
                          else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.variant in ("baseline", "cached"):
        result["eval_batch_s"] = eval_speed(model, batches, text_features if fusion else None, device, autocast)
    print(json.dumps(result))


@torch.no_grad()
def eval_speed(model, batches, text_features, device, autocast, repeats=3):
    """Median seconds for forward + beam search (4 beams) on one batch."""
    model.eval()
    times = []
    for i in range(repeats):
        src, tgt, per_frame = batches[i % len(batches)]
        src = {k: v.to(device) for k, v in src.items()}
        start = time.perf_counter()
        if text_features:
            _, plan, feats = text_features(per_frame)
            src.update({k: v.to(device) for k, v in plan.items()}, text_features=feats.to(device))
        with autocast:
            model.generate(model(src, tgt), max_new_tokens=30, num_beams=4)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dataset_speed(max_length=256):
    """Samples/s of S2T_Dataset on the mini-world, with and without descriptions."""
    import importlib
    import os

    from uni_sign_ext.fixture import build_mini_world

    world = build_mini_world(REPO / "mini_world")
    os.environ["UNISIGN_ROOT"] = str(world)
    import config
    import utils
    importlib.reload(config)
    importlib.reload(utils)
    from datasets import S2T_Dataset

    speeds = {}
    for flag in ([], ["--use_descriptions"]):
        args = utils.get_args_parser().parse_args(["--max_length", str(max_length)] + flag)
        dataset = S2T_Dataset(config.train_label_paths["CSL_Daily"], args, "train")
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 3:
            dataset[n % len(dataset)]
            n += 1
        speeds["with_descriptions" if flag else "pose_only"] = n / (time.perf_counter() - start)
    return speeds


def device_name(device):
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    import platform
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--mt5", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return measure(args)

    results = {"device": device_name(args.device), "size": args.size, "mt5_config": SIZES[args.size],
               "batch": args.batch, "frames": args.frames, "steps": args.steps,
               "note": "" if args.size == "base" else "reduced size (CPU run), not mT5-base"}
    with tempfile.TemporaryDirectory() as tmp:
        make_mt5(Path(tmp), args.size)
        for variant in ("fill_cache", "baseline", "cached", "uncached", "per_frame"):
            print(f"[bench] {variant} …", flush=True)
            cmd = [sys.executable, __file__, "--variant", variant, "--mt5", tmp, "--cache", f"{tmp}/cache",
                   "--device", args.device, "--batch", str(args.batch), "--frames", str(args.frames),
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
            subprocess_result = subprocess.run(cmd, capture_output=True, text=True)
            if subprocess_result.returncode != 0:
                sys.exit(f"[bench] {variant} failed:\n{subprocess_result.stderr[-4000:]}")
            if variant == "fill_cache":
                continue
            measured = json.loads(subprocess_result.stdout.strip().splitlines()[-1])
            results[f"{variant}_step_s"] = measured["step_s"]
            results[f"{variant}_peak_mib"] = measured["peak_mib"]
            if "eval_batch_s" in measured:
                results[f"{variant}_eval_batch_s"] = measured["eval_batch_s"]
            print(f"[bench] {variant}: {measured}", flush=True)
    results["dataset_samples_per_s"] = dataset_speed()
    results["cached_over_baseline"] = results["cached_step_s"] / results["baseline_step_s"]
    results["uncached_over_baseline"] = results["uncached_step_s"] / results["baseline_step_s"]
    write_results(results, Path(args.out))


def write_results(results, out):
    out.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() else "_" for c in results["device"]).strip("_") + f"_{results['size']}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    rows = ["| variant | step (s, median) | × baseline | peak memory (MiB) |", "|---|---|---|---|"]
    for variant in ("baseline", "cached", "uncached", "per_frame"):
        rows.append(f"| {variant} | {results[f'{variant}_step_s']:.3f} | "
                    f"{results[f'{variant}_step_s'] / results['baseline_step_s']:.3f} | "
                    f"{results[f'{variant}_peak_mib']:.0f} |")
    speeds = results["dataset_samples_per_s"]
    text = "\n".join([
        f"# Description-fusion benchmark — {results['device']}", "",
        f"Size: {results['size']} {results['note']}; mT5 config {results['mt5_config']}; batch {results['batch']}, "
        f"{results['frames']} frames, a new description every 8–16 frames; median of {results['steps']} steps "
        "after warm-up.", "", *rows, "",
        f"Beam search (4 beams, 30 new tokens), one batch: baseline {results['baseline_eval_batch_s']:.3f} s, "
        f"with fusion (cached) {results['cached_eval_batch_s']:.3f} s.", "",
        f"Dataset (mini-world, max_length 256): {speeds['pose_only']:.1f} samples/s pose-only, "
        f"{speeds['with_descriptions']:.1f} samples/s with descriptions.", ""])
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

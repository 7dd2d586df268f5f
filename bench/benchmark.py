"""Training-step time and peak memory of description fusion vs the pose-only baseline, and of RGB-pose.

Variants (each measured in its own process so peak memory is its own):
  baseline    — upstream model, no descriptions
  cached      — fusion, text features looked up from a filled feature cache
  uncached    — fusion, the batch's unique texts encoded by the frozen encoder every step
  per_frame   — reference copy of the user's sketch: one encoder call per frame (B·T calls per step)
  rgb         — upstream's RGB-pose model (--rgb_support), no descriptions
  rgb_cached  — RGB-pose with fusion, cached text features
plus beam-search evaluation speed with and without fusion (pose-only and RGB-pose), and the dataset's
samples/s on the mini-world. RGB-pose batches carry, per hand and video, ceil(10 % of the frames) 112×112
crops (upstream's share of a hand's confident frames, every hand confident in every frame: the most crops a
clip of that length gives); the backbone is loaded from a random-init EfficientNet-B0 file through
--rgb_backbone_weights and the gate is opened (a trained checkpoint's regime; the work done per step does
not depend on the weights' values).

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


VARIANTS = ("baseline", "cached", "uncached", "per_frame", "rgb", "rgb_cached")
RGB_WEIGHTS = "efficientnet_b0_random_init.pth"  # written next to the random mT5 (fixture_video's weights)


def split_variant(variant):
    """'rgb_cached' → (True, 'cached'); 'rgb' → (True, 'baseline'); 'cached' → (False, 'cached')."""
    if variant == "rgb":
        return True, "baseline"
    if variant.startswith("rgb_"):
        return True, variant[len("rgb_"):]
    return False, variant


def synthetic_support(batch, frames, generator):
    """Upstream's collated RGB support dict (models.Uni_Sign's batch keys, uni_sign_ext/rgb_fusion.py) with
    ceil(SAMPLE_SHARE · frames) crops per hand and video at random sorted frame positions."""
    import math

    from uni_sign_ext.hand_crops import IMAGE_SIZE, SAMPLE_SHARE
    from uni_sign_ext.rgb_fusion import HANDS, support_keys

    per_video = max(1, math.ceil(SAMPLE_SHARE * frames))
    out = {}
    for hand in HANDS:
        crops, indices, skeletons, lengths = support_keys(hand)
        out[crops] = torch.randn(batch * per_video, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        out[indices] = torch.cat([torch.randperm(frames, generator=generator)[:per_video].sort().values
                                  for _ in range(batch)])
        out[skeletons] = torch.rand(batch * per_video, 21, 2, generator=generator)
        out[lengths] = [per_video] * batch
    return out


def synthetic_batch(batch, frames, rng, rgb_generator=None):
    """Pose parts, target sentences, and per video a new description every 8–16 frames; with `rgb_generator`,
    the hand crops too (from that stream: the texts are those of the pose-only variants)."""
    src = {part: torch.rand(batch, frames, nodes, 3) * 2 - 1 for part, nodes in PARTS.items()}
    src["attention_mask"] = torch.ones(batch, frames, dtype=torch.long)
    if rgb_generator is not None:
        src.update(synthetic_support(batch, frames, rgb_generator))
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


def to_device(src, device):
    """The batch's tensors on `device`; the RGB support's per-sample count lists stay lists."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in src.items()}


def build_model(model_args, device):
    """Uni_Sign in train mode; with --rgb_support the backbone loaded from --rgb_backbone_weights (as
    fine_tuning.py does) and the gate opened (tests/rgb_support.py: a trained checkpoint's regime)."""
    from models import Uni_Sign
    from uni_sign_ext.rgb_weights import backbone_weights_source, load_backbone_weights

    model = Uni_Sign(model_args)
    if model_args.rgb_support:
        sys.path.insert(0, str(REPO / "tests"))
        from rgb_support import open_gate

        load_backbone_weights(model.rgb_support_backbone, backbone_weights_source(model_args))
        open_gate(model)
    return model.to(device).train()


def measure(args):
    """One variant in this process: median step time and peak memory (a dict)."""
    from utils import get_args_parser
    from uni_sign_ext.feature_cache import TextFeatureProvider
    from uni_sign_ext.text_encoder import FrozenTextEncoder

    device = torch.device(args.device)
    rgb, text = split_variant(args.variant)
    fusion = text != "baseline"
    flags = ["--mt5_path", args.mt5, "--dataset", "How2Sign", "--text_dropout_p", "0"]
    if rgb:
        flags += ["--rgb_support", "--rgb_backbone_weights", args.rgb_weights]
    model_args = get_args_parser().parse_args(flags + (["--use_descriptions"] if fusion else []))
    rng = random.Random(0)
    rgb_generator = torch.Generator().manual_seed(0) if rgb else None
    batches = [synthetic_batch(args.batch, args.frames, rng, rgb_generator) for _ in range(4)]
    provider = encoder = None
    all_texts = sorted({t for _, _, per_frame in batches for video in per_frame for t in video})
    if args.variant == "fill_cache":
        return TextFeatureProvider(args.mt5, cache_dir=args.cache, dataset="bench").warm(all_texts, progress=False)
    model = build_model(model_args, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    if text == "cached":
        provider = TextFeatureProvider(args.mt5, cache_dir=args.cache, dataset="bench", device=args.device)
    elif text in ("uncached", "per_frame"):
        encoder = FrozenTextEncoder(args.mt5, device=args.device)

    def text_features(per_frame):
        unique, plan = batch_plan(per_frame)
        if text == "cached":
            return unique, plan, provider(unique)
        if text == "uncached":
            return unique, plan, encoder.encode(unique)
        # The user's sketch: encode every frame's text on its own, B·T encoder calls.
        feats = torch.stack([encoder.encode([t])[0] for video in per_frame for t in video])
        ids = torch.arange(len(feats)).view(len(per_frame), -1)
        plan.update(desc_left=ids, desc_right=ids.clone())
        return unique, plan, feats

    def step(i):
        src, tgt, per_frame = batches[i % len(batches)]
        src = to_device(src, device)
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
    if text in ("baseline", "cached"):
        result["eval_batch_s"] = eval_speed(model, batches, text_features if fusion else None, device, autocast)
    return result


@torch.no_grad()
def eval_speed(model, batches, text_features, device, autocast, repeats=3):
    """Median seconds for forward + beam search (4 beams) on one batch."""
    model.eval()
    times = []
    for i in range(repeats):
        src, tgt, per_frame = batches[i % len(batches)]
        src = to_device(src, device)
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


def machine_name():
    """The CPU model (the device name does not say it)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                        "unknown CPU")
    except OSError:
        return "unknown CPU"


def run_variant(variant, args, tmp):
    """One variant in a fresh process (its own peak memory) → its result dict (None for fill_cache)."""
    cmd = [sys.executable, __file__, "--variant", variant, "--mt5", tmp, "--cache", f"{tmp}/cache",
           "--rgb_weights", f"{tmp}/{RGB_WEIGHTS}", "--device", args.device, "--batch", str(args.batch),
           "--frames", str(args.frames), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    subprocess_result = subprocess.run(cmd, capture_output=True, text=True)
    if subprocess_result.returncode != 0:
        sys.exit(f"[bench] {variant} failed:\n{subprocess_result.stderr[-4000:]}")
    if variant == "fill_cache":
        return None
    return json.loads(subprocess_result.stdout.strip().splitlines()[-1])


def main():
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--note", default="", help="a remark for the results (e.g. a shared machine)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--mt5", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--rgb_weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        result = measure(args)
        if args.variant != "fill_cache":
            print(json.dumps(result))
        return

    results = {"device": device_name(args.device), "machine": machine_name(), "cores": os.cpu_count(),
               "size": args.size, "mt5_config": SIZES[args.size], "batch": args.batch, "frames": args.frames,
               "steps": args.steps, "note": "" if args.size == "base" else "reduced size (CPU run), not mT5-base",
               "remark": args.note,
               "load_avg_1min": {}}  # before each variant and at the end: this run's own threads count in it
    with tempfile.TemporaryDirectory() as tmp:
        make_mt5(Path(tmp), args.size)
        from uni_sign_ext.fixture_video import write_random_backbone_weights
        write_random_backbone_weights(Path(tmp) / RGB_WEIGHTS)
        for variant in ("fill_cache",) + VARIANTS:
            print(f"[bench] {variant} …", flush=True)
            results["load_avg_1min"][variant] = round(os.getloadavg()[0], 2)
            measured = run_variant(variant, args, tmp)
            if measured is None:
                continue
            results[f"{variant}_step_s"] = measured["step_s"]
            results[f"{variant}_peak_mib"] = measured["peak_mib"]
            if "eval_batch_s" in measured:
                results[f"{variant}_eval_batch_s"] = measured["eval_batch_s"]
            print(f"[bench] {variant}: {measured}", flush=True)
    results["dataset_samples_per_s"] = dataset_speed()
    results["load_avg_1min"]["end"] = round(os.getloadavg()[0], 2)
    results["cached_over_baseline"] = results["cached_step_s"] / results["baseline_step_s"]
    results["uncached_over_baseline"] = results["uncached_step_s"] / results["baseline_step_s"]
    results["rgb_over_baseline"] = results["rgb_step_s"] / results["baseline_step_s"]
    results["rgb_cached_over_rgb"] = results["rgb_cached_step_s"] / results["rgb_step_s"]
    write_results(results, Path(args.out))


def write_results(results, out):
    import math

    from uni_sign_ext.hand_crops import SAMPLE_SHARE

    out.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() else "_" for c in results["device"]).strip("_") + f"_{results['size']}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    rows = ["| variant | step (s, median) | × baseline | peak memory (MiB) |", "|---|---|---|---|"]
    for variant in VARIANTS:
        rows.append(f"| {variant} | {results[f'{variant}_step_s']:.3f} | "
                    f"{results[f'{variant}_step_s'] / results['baseline_step_s']:.3f} | "
                    f"{results[f'{variant}_peak_mib']:.0f} |")
    speeds = results["dataset_samples_per_s"]
    load = results["load_avg_1min"]
    crops = max(1, math.ceil(SAMPLE_SHARE * results["frames"]))
    text = "\n".join([
        f"# Description-fusion and RGB-pose benchmark — {results['device']}", "",
        f"Machine: {results['machine']}, {results['cores']} cores; load average (1 min) before each variant and at "
        f"the end (this run's own threads included): {', '.join(f'{k} {v:.2f}' for k, v in load.items())}.", "",
        *([f"Note: {results['remark']}", ""] if results.get("remark") else []),
        f"Size: {results['size']} {results['note']}; mT5 config {results['mt5_config']}; batch {results['batch']}, "
        f"{results['frames']} frames, a new description every 8–16 frames; median of {results['steps']} steps "
        f"after warm-up. RGB-pose (`--rgb_support`): {crops} hand crops (112×112) per hand and video, "
        "EfficientNet-B0 from a random-init weights file, gate opened.", "", *rows, "",
        f"RGB-pose over pose-only: {results['rgb_step_s'] / results['baseline_step_s']:.2f}× the step, "
        f"{results['rgb_peak_mib'] - results['baseline_peak_mib']:+.0f} MiB peak; descriptions (cached) on top of "
        f"RGB-pose: {results['rgb_cached_step_s'] / results['rgb_step_s']:.3f}× the RGB-pose step, "
        f"{results['rgb_cached_peak_mib'] - results['rgb_peak_mib']:+.0f} MiB.", "",
        f"Beam search (4 beams, 30 new tokens), one batch: baseline {results['baseline_eval_batch_s']:.3f} s, "
        f"with fusion (cached) {results['cached_eval_batch_s']:.3f} s; RGB-pose {results['rgb_eval_batch_s']:.3f} s, "
        f"with fusion (cached) {results['rgb_cached_eval_batch_s']:.3f} s.", "",
        f"Dataset (mini-world, max_length 256): {speeds['pose_only']:.1f} samples/s pose-only, "
        f"{speeds['with_descriptions']:.1f} samples/s with descriptions (pose files only; the --rgb_support data "
        "side, video decoding and crops: bench/results/rgb_data.md).", ""])
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

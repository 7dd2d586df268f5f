"""Data speed with --rgb_support: samples/s of S2T_Dataset.__getitem__ (pose + video + crops), one process,
ours vs upstream's datasets.py on the same mini-world mp4 files and seeds.

    python bench/rgb_data.py [--world DIR] [--size 160x120] [--passes 3] [--rounds 2] [--decoder auto]
                             [--reference-python .venv_tv/bin/python] [--upstream DIR] [--breakdown]
                             [--out bench/results/rgb_data.md]

--size WxH films the world at another frame size (the mini-world's default is fixture_video's 160×120; CSL-Daily's
released frames are 512×512): the world is built in its own folder (default: the temp folder, named by size).
The two sides take turns (--rounds), each running --passes passes over the split per round, so that a change in
the machine's load hits both; the best passes and the median passes of the two sides are compared, in wall time
and in CPU time (process time, all threads: what a pass costs in CPU whatever else runs on the machine).
Upstream's passes spread much wider than ours even on a quiet machine, so the two can differ.

Upstream runs under a python with torchvision (tests/rgb_reference_runner.py) with its own decoder, the real
decord (0.6.0, requirements-test.txt; `VideoReader(path, num_threads=1).get_batch(frames)` as upstream calls
it) where that python can import it; else, or with --decoder stand-in, with the runner's test-only decord
stand-in built on PyAV (decoding in order up to the last frame asked, single-threaded): then upstream's
decoding cost is PyAV's, not decord's. The output names the decoder that ran. Ours decodes single-threaded
too (video._opened). The issue's target is ours ≥ 3× upstream's.

--breakdown also splits our CPU time per sample into the pose path (the same samples without --rgb_support),
decoding (video.read_frames: opening, demuxing, the codec on the needed frames and what they depend on), the
rgb24 conversion of the crops' parts of those frames, Pillow's bicubic resize of the crops and the rest
(choosing the hand frames, boxes, padding, normalising, the dict), and prints the floor: upstream's CPU per
sample over pose path + decoding + Pillow resize, the ratio an implementation that decodes what the needed
frames depend on and resizes with Pillow (upstream's pixels need both) could reach if everything else cost
nothing.
"""
import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ours(world, seeds, rgb=True):
    os.environ["UNISIGN_ROOT"] = str(world)
    import importlib

    import numpy as np
    import torch

    import config
    importlib.reload(config)
    import datasets
    import utils

    args = utils.get_args_parser().parse_args(["--dataset", "CSL_Daily"] + ["--rgb_support"] * rgb)
    ds = datasets.S2T_Dataset(config.train_label_paths["CSL_Daily"], args, "train")
    times = []
    for seed in seeds:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(len(ds)):
            ds[i]
        times.append((time.perf_counter() - started, time.process_time() - cpu_started))
    return len(ds), times


def breakdown(world, seeds):
    """Our CPU ms per sample, best pass: {"total", "pose path", "decoding", "rgb24 conversion", "Pillow resize",
    "rest"}. Decoding is video.read_frames (opening, demuxing, the codec); the rgb24 conversion is reading the crops'
    parts out of the decoded frames (video.Frame)."""
    from PIL import Image

    import uni_sign_ext.rgb_support as rgb_support
    import uni_sign_ext.video as video

    spent = {}

    def timed(owner, name, part):
        function = getattr(owner, name)

        def wrapper(*args, **kwargs):
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[part] += time.process_time() - started

        setattr(owner, name, wrapper)
        return lambda: setattr(owner, name, function)

    restore = [timed(rgb_support, "read_frames", "decoding"), timed(video.Frame, "__getitem__", "rgb24 conversion"),
               timed(Image.Image, "resize", "Pillow resize")]
    try:
        best = None
        for seed in seeds:
            spent.update(dict.fromkeys(("decoding", "rgb24 conversion", "Pillow resize"), 0.0))
            n, ((_, cpu),) = ours(world, [seed])
            if best is None or cpu < best["total"]:
                best = {"total": cpu, **spent}
    finally:
        for undo in restore:
            undo()
    n, times = ours(world, seeds, rgb=False)
    best["pose path"] = min(c for _, c in times)
    best["rest"] = best["total"] - sum(v for k, v in best.items() if k != "total")
    return {part: 1000 * seconds / n for part, seconds in best.items()}


def upstream(world, seeds, python, upstream_dir, decoder):
    """Upstream's samples, its (wall, CPU) seconds per pass, and the name of the decoder it ran with."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.pt"
        subprocess.run([python, str(REPO / "tests" / "rgb_reference_runner.py"), str(upstream_dir), str(world),
                        str(out), "--time", "--decoder", decoder, "--seeds", *map(str, seeds)], check=True,
                       capture_output=True)
        result = torch.load(out, weights_only=False)
    name = result.pop("decoder")
    runs = list(result.values())
    return runs[0]["samples"], [(r["seconds"], r["cpu_seconds"]) for r in runs], name


def build_world(world, size):
    """The bench world at frame size (W, H): fixture_video's module constants set only while it is filmed."""
    import av

    import uni_sign_ext.fixture_video as fixture_video
    from uni_sign_ext.fixture import build_mini_world

    default = (fixture_video.WIDTH, fixture_video.HEIGHT)
    fixture_video.WIDTH, fixture_video.HEIGHT = size
    try:
        build_mini_world(world, samples_per_split=24, seed=0, videos=True)
    finally:
        fixture_video.WIDTH, fixture_video.HEIGHT = default
    video = next((Path(world) / "dataset" / "CSL_Daily" / "sentence-crop").glob("*.mp4"))
    with av.open(str(video)) as container:
        found = (container.streams.video[0].width, container.streams.video[0].height)
    if found != tuple(size):
        raise SystemExit(f"{world} holds {found[0]}x{found[1]} videos, not {size[0]}x{size[1]}: pass another --world")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="")
    parser.add_argument("--size", default="160x120", help="frame size WxH of the world's videos")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reference-python", default=os.environ.get("UNISIGN_TV_PYTHON", ".venv_tv/bin/python"))
    parser.add_argument("--upstream", default=os.environ.get("UNISIGN_UPSTREAM", ""))
    parser.add_argument("--decoder", choices=("auto", "decord", "stand-in"), default="auto",
                        help="upstream's decoder: real decord if importable (auto), real decord or fail, the PyAV "
                             "stand-in")
    parser.add_argument("--breakdown", action="store_true", help="also split our CPU time per sample (module doc)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    suffix = "" if size == (160, 120) else f"_{size[0]}x{size[1]}"
    world = Path(args.world or Path(tempfile.gettempdir()) / f"unisign_rgb_bench_world{suffix}")
    build_world(world, size)
    seeds = list(range(args.passes))
    run_upstream = bool(args.upstream) and Path(args.reference_python).is_file()
    load_before = os.getloadavg()
    our_times, their_times, decoders = [], [], set()
    for _ in range(args.rounds):
        n, times = ours(world, seeds)
        our_times += times
        if run_upstream:
            m, times, decoder = upstream(world, seeds, args.reference_python, args.upstream, args.decoder)
            their_times += times
            decoders.add(decoder)
    load_after = os.getloadavg()
    lines = [f"# --rgb_support data speed ({platform.machine()}, {os.cpu_count()} CPUs, 1 process, "
             f"mini-world CSL_Daily train: {n} samples, {size[0]}×{size[1]} H.264, {args.rounds} rounds × "
             f"{args.passes} passes per side)", "",
             f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after.", ""]
    def figures(name, count, times):
        """Samples/s of the best and of the median pass, (wall, CPU) each."""
        walls, cpus = [t for t, _ in times], [c for _, c in times]
        best = count / min(walls), count / min(cpus)
        median = count / statistics.median(walls), count / statistics.median(cpus)
        lines.append(f"- {name}: {best[0]:.1f} samples/s wall, {best[1]:.1f} samples per CPU-second (best passes; "
                     f"median passes {median[0]:.1f} / {median[1]:.1f}; passes "
                     f"{', '.join(f'{t:.2f}/{c:.2f}' for t, c in times)} s wall/CPU)")
        return best, median

    our_rates = figures("ours", n, our_times)
    if run_upstream:
        their_rates = figures(f"upstream ({', '.join(sorted(decoders))})", m, their_times)
        (bw, bc), (mw, mc) = [(o[0] / t[0], o[1] / t[1]) for o, t in zip(our_rates, their_rates)]
        lines.append(f"- ratio ours / upstream: best passes {bw:.2f}× wall, {bc:.2f}× CPU; median passes {mw:.2f}× "
                     f"wall, {mc:.2f}× CPU (target ≥ 3×)")
    else:
        lines.append("- upstream: not run (pass --upstream and a --reference-python with torchvision)")
    if args.breakdown:
        parts = breakdown(world, seeds)
        lines.append("- ours, CPU ms per sample (best pass): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
        if run_upstream:
            floor = parts["pose path"] + parts["decoding"] + parts["Pillow resize"]
            their_ms = 1000 / their_rates[0][1]
            lines.append(f"- floor: upstream {their_ms:.2f} CPU ms per sample (best pass) / (pose path + decoding + "
                         f"Pillow resize) {floor:.2f} = {their_ms / floor:.2f}× at most, if the rest cost "
                         "nothing")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

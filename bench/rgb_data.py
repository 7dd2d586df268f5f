"""Data speed with --rgb_support: samples/s of S2T_Dataset.__getitem__ (pose + video + crops), one process,
ours vs upstream's datasets.py on the same mini-world mp4 files and seeds.

    python bench/rgb_data.py [--world DIR] [--passes 3] [--reference-python .venv_tv/bin/python]
                             [--upstream DIR] [--out bench/results/rgb_data.md]

Upstream runs under a python with torchvision (tests/rgb_reference_runner.py), with a test-only `decord`
stand-in built on PyAV (decord is not installable here): its decoding cost is therefore PyAV's, decoding in
order up to the last frame asked, not real decord's. The issue's target is ours ≥ 3× upstream's.
"""
import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ours(world, seeds):
    os.environ["UNISIGN_ROOT"] = str(world)
    import importlib

    import numpy as np
    import torch

    import config
    importlib.reload(config)
    import datasets
    import utils

    args = utils.get_args_parser().parse_args(["--dataset", "CSL_Daily", "--rgb_support"])
    ds = datasets.S2T_Dataset(config.train_label_paths["CSL_Daily"], args, "train")
    times = []
    for seed in seeds:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        started = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        times.append(time.perf_counter() - started)
    return len(ds), times


def upstream(world, seeds, python, upstream_dir):
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.pt"
        subprocess.run([python, str(REPO / "tests" / "rgb_reference_runner.py"), str(upstream_dir), str(world),
                        str(out), "--time", "--seeds", *map(str, seeds)], check=True, capture_output=True)
        result = torch.load(out, weights_only=False)
    runs = list(result.values())
    return runs[0]["samples"], [r["seconds"] for r in runs]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--reference-python", default=os.environ.get("UNISIGN_TV_PYTHON", ".venv_tv/bin/python"))
    parser.add_argument("--upstream", default=os.environ.get("UNISIGN_UPSTREAM", ""))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from uni_sign_ext.fixture import build_mini_world

    world = Path(args.world or Path(tempfile.gettempdir()) / "unisign_rgb_bench_world")
    build_mini_world(world, samples_per_split=24, seed=0, videos=True)
    seeds = list(range(args.passes))
    n, our_times = ours(world, seeds)
    lines = [f"# --rgb_support data speed ({platform.machine()}, {os.cpu_count()} CPUs, 1 process, "
             f"mini-world CSL_Daily train: {n} samples, 160×120 H.264, {args.passes} passes)", ""]
    best_ours = n / min(our_times)
    lines.append(f"- ours: {best_ours:.1f} samples/s (best pass; passes {', '.join(f'{t:.2f}' for t in our_times)} s)")
    if args.upstream and Path(args.reference_python).is_file():
        m, their_times = upstream(world, seeds, args.reference_python, args.upstream)
        best_theirs = m / min(their_times)
        lines.append(f"- upstream (decord stand-in on PyAV): {best_theirs:.1f} samples/s (passes "
                     f"{', '.join(f'{t:.2f}' for t in their_times)} s)")
        lines.append(f"- ratio ours / upstream: {best_ours / best_theirs:.2f}× (target ≥ 3×)")
    else:
        lines.append("- upstream: not run (pass --upstream and a --reference-python with torchvision)")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

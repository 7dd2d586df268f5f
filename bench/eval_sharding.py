"""Dev-evaluation time (beam search over the dev split) on 1 rank vs N gloo ranks, whole fine_tuning.py runs.

Each rank runs one thread, so N ranks use N cores; the evaluation is `--eval` on the offline mini-world
(tiny mT5; pose-only, fp32), timed by fine_tuning.py itself (the "[dev] … (X.Xs)" line), best of
--repeats. Results (with the machine) go to bench/results/eval_sharding_<ranks>ranks.json/.md.

    python bench/eval_sharding.py                     # 2 ranks vs 1, 48 dev samples
    python bench/eval_sharding.py --ranks 4 --samples 96
"""
import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def dev_seconds(ranks, root, args):
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(ranks), "--master_port",
           free_port(), str(REPO / "fine_tuning.py"), "--dataset", "CSL_Daily", "--eval", "--dtype", "fp32",
           "--batch-size", str(args.batch_size), "--max_length", "64", "--num_workers", "0", "--seed", "0"]
    env = dict(os.environ, UNISIGN_ROOT=str(root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    found = re.search(r"\[dev\] (.*) \(([\d.]+)s\)", output)
    if proc.returncode or not found:
        raise SystemExit(f"{ranks}-rank evaluation failed:\n{output[-4000:]}")
    return float(found.group(2)), found.group(1)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--samples", type=int, default=48, help="dev samples in the mini-world")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from uni_sign_ext.fixture import build_mini_world

    with tempfile.TemporaryDirectory() as tmp:
        root = build_mini_world(Path(tmp) / "world", samples_per_split=args.samples, seed=0)
        times, metrics = {}, {}
        for _ in range(args.repeats):  # interleaved, so a busy spell on the machine hits both
            for ranks in (1, args.ranks):
                seconds, metrics[ranks] = dev_seconds(ranks, root, args)
                times.setdefault(ranks, []).append(seconds)
    if metrics[1] != metrics[args.ranks]:
        raise SystemExit(f"metrics differ: 1 rank {metrics[1]} vs {args.ranks} ranks {metrics[args.ranks]}")
    best = {ranks: min(t) for ranks, t in times.items()}
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs, no GPU; 1 thread per rank",
        "load_average_at_end": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dev_samples": args.samples, "batch_size": args.batch_size, "repeats": args.repeats,
        "seconds": {str(r): t for r, t in times.items()},
        "speedup": best[1] / best[args.ranks],
        "dev_metrics_identical": True, "dev_metrics": metrics[1],
    }
    out = REPO / "bench" / "results" / f"eval_sharding_{args.ranks}ranks"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# Dev evaluation, {args.ranks} gloo ranks vs 1\n\n{result['machine']}; {result['date']}; "
        f"load average at the end {', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}.\n\n"
        f"{args.samples} dev samples, batch {args.batch_size}, beam search (4 beams, ≤ 100 new tokens), "
        f"tiny mT5, best of {args.repeats}.\n\n"
        f"| ranks | seconds (each repeat) | best |\n|---|---|---|\n"
        + "".join(f"| {r} | {', '.join(f'{x:.1f}' for x in t)} | {best[r]:.1f} |\n" for r, t in times.items())
        + f"\nSpeed-up: **{result['speedup']:.2f}×**; dev metrics identical on 1 and {args.ranks} ranks "
          f"({metrics[1]}).\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

"""Does fusion help? The informative mini-world trained with and without descriptions, both fusion types,
several seeds (and optionally learning rates and dtypes), plus the withheld ablation and the noise world.

    python bench/fusion_study.py --seeds 0 1 2 --out bench/results/fusion_study.md

Every run is the real CLI (DeepSpeed, 1 rank) with uni_sign_ext.study's recipe; each world's pose-only run
is its baseline (same seed, lr, dtype and start). Prints and writes a Markdown table.
"""
import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uni_sign_ext.results import read_metrics  # noqa: E402
from uni_sign_ext.study import EPOCHS, INITIAL_GATE, LR, train_and_test, world  # noqa: E402


def machine():
    """CPU model and core count, as the table's header names them."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []
    return f"{models[0] if models else platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def row(cells):
    return "| " + " | ".join(cells) + " |"


def measure(args, worlds, seed, lr, dtype, start, kind, fusion):
    """One run's (metrics, minutes), or None when --table-only finds it unfinished.

    start: "random" (a fresh translator) or "pretrained" (--finetune the same cell's random-init pose-only
    run, for --finetune-epochs at --finetune-lr: the user's stage-2 checkpoint, then descriptions or more
    pose-only).
    """
    tag = f"{kind}_{fusion or 'pose'}_s{seed}_lr{lr}_{dtype}"
    finetune, epochs = None, args.epochs
    if start == "pretrained":
        finetune = Path(args.work) / "runs" / f"{kind}_pose_s{seed}_lr{lr}_{dtype}" / "best_checkpoint.pth"
        tag, epochs = f"{tag}_ft{args.finetune_epochs}", args.finetune_epochs
        if args.finetune_lr:
            tag, lr = f"{tag}_lr{args.finetune_lr}", args.finetune_lr
    out = Path(args.work) / "runs" / tag
    if (args.reuse or args.table_only) and (out / "test_metrics.json").is_file():  # finished earlier
        return with_last_epoch(read_metrics(out), out), float("nan")
    if args.table_only:
        return None
    started = time.time()
    m = train_and_test(worlds[kind], out, fusion, seed, lr, epochs, dtype, finetune)
    print(f"{tag}: test BLEU-4 {m['bleu4']:.2f}", flush=True)
    return with_last_epoch(m, out), (time.time() - started) / 60


def with_last_epoch(metrics, out):
    """The test metrics plus the last epoch's test BLEU-4 ("last"): where dev barely moves, the best-dev weights
    can be an early epoch's, before a fresh fusion has trained (the stage-3 noise runs)."""
    last = out / "test_last_epoch_metrics.json"  # absent when the last epoch was the best-dev one
    return dict(metrics, last=read_metrics(out, "test_last_epoch")["bleu4"] if last.is_file() else metrics["bleu4"])


def study(args):
    """The table's rows; pretrained runs start once their cell's random-init pose-only run has finished."""
    worlds = {kind: world(args.work, kind) for kind in ("informative", "noise")}
    runs = [(k, None) for k in args.worlds] + [(k, f) for f in args.fusion_types for k in args.worlds]
    starts = ["random"] + (["pretrained"] if args.finetune_epochs else [])
    jobs = [(seed, lr, dtype, start, kind, fusion) for dtype in args.dtypes for lr in args.lrs
            for seed in args.seeds for start in starts for kind, fusion in runs]
    with ThreadPoolExecutor(args.jobs) as pool:  # each run is a subprocess: threads suffice
        results = {}
        for phase in starts:  # the pretrained phase needs the random phase's pose-only checkpoints
            todo = [job for job in jobs if job[3] == phase]
            results.update(zip(todo, pool.map(lambda job: measure(args, worlds, *job), todo)))
    then = f" at lr {args.finetune_lr}" if args.finetune_lr else ""
    translator = {"random": "random init", "pretrained": f"pose-only ckpt + {args.finetune_epochs} ep{then}"}
    lines = [row(["seed", "lr", "dtype", "translator", "world", "run", "test BLEU-4", "withheld BLEU-4", "gain",
                  "withheld cost", "gate described / undescribed", "last epoch: BLEU-4, gain", "minutes"]),
             row(["---"] * 13)]
    for (seed, lr, dtype, start, kind, fusion), result in results.items():
        base = results.get((seed, lr, dtype, start, kind, None))
        if result is None or base is None:
            continue
        m, minutes = result
        cells = [str(seed), str(lr), dtype, translator[start]]
        took = "–" if minutes != minutes else f"{minutes:.1f}"
        if fusion is None:
            lines.append(row(cells + [kind, "pose-only", f"{m['bleu4']:.2f}", "–", "–", "–", "–", f"{m['last']:.2f}",
                                      took]))
            continue
        base, w = base[0], m["withheld"]
        lines.append(row(cells + [kind, fusion, f"{m['bleu4']:.2f}", f"{w['bleu4']:.2f}",
                                  f"{m['bleu4'] - base['bleu4']:+.2f}", f"{m['bleu4'] - w['bleu4']:+.2f}",
                                  f"{m['gate_described']:.3f} / {m['gate_undescribed']:.3f}",
                                  f"{m['last']:.2f}, {m['last'] - base['last']:+.2f}", took]))
    return lines[:2] + sorted(lines[2:], key=lambda line: line.split("|")[1:5])  # stable: pose-only first


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[LR])
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--fusion-types", nargs="+", default=["gating", "cross_attn"])
    parser.add_argument("--worlds", nargs="+", default=["informative", "noise"])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="also continue each cell's pose-only run for this many epochs, pose-only and with "
                             "descriptions (a pretrained-like translator); 0: random init only")
    parser.add_argument("--finetune-lr", type=float, help="the continuation's lr (default: the cell's lr)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--reuse", action="store_true", help="keep runs of --work that finished")
    parser.add_argument("--note", default="", help="said after the machine in the table's header")
    parser.add_argument("--table-only", action="store_true", help="tabulate the finished runs of --work, run nothing")
    parser.add_argument("--work", default="out/fusion_study")
    parser.add_argument("--out", default="bench/results/fusion_study.md")
    args = parser.parse_args()
    lines = study(args)
    header = [f"# Fusion study ({time.strftime('%Y-%m-%d')})", "",
              f"Machine: {machine()}, CPU only{'; ' + args.note if args.note else ''}. Command: "
              f"`python bench/fusion_study.py {' '.join(sys.argv[1:])}`.",
              f"Recipe: uni_sign_ext/study.py ({args.epochs} epochs). gain = test BLEU-4 − pose-only's "
              f"(same seed, lr, dtype, translator); withheld cost = test BLEU-4 − the same model's with descriptions "
              f"withheld. The gate starts at {INITIAL_GATE:.3f} on every frame.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

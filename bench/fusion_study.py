"""Does fusion help? The informative mini-world trained with and without descriptions, both fusion types,
several seeds (and optionally learning rates and dtypes), plus the withheld ablation and the noise world.

    python bench/fusion_study.py --seeds 0 1 2 --out bench/results/fusion_study.md

Every run is the real CLI (DeepSpeed, 1 rank) with uni_sign_ext.study's recipe; pose-only runs are the
baseline of both worlds (they differ only in the description files). Prints and writes a Markdown table.
"""
import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uni_sign_ext.study import EPOCHS, INITIAL_GATE, LR, train_and_test, world  # noqa: E402


def row(cells):
    return "| " + " | ".join(cells) + " |"


def study(args):
    worlds = {kind: world(args.work, kind) for kind in ("informative", "noise")}
    lines = [row(["seed", "lr", "dtype", "world", "run", "test BLEU-4", "withheld BLEU-4", "gain",
                  "withheld cost", "gate described / undescribed", "minutes"]),
             row(["---"] * 11)]
    for dtype in args.dtypes:
        for lr in args.lrs:
            for seed in args.seeds:
                tag = f"s{seed}_lr{lr}_{dtype}"
                started = time.time()
                base = train_and_test(worlds["informative"], Path(args.work) / "runs" / f"pose_{tag}",
                                      None, seed, lr, args.epochs, dtype)
                minutes = (time.time() - started) / 60
                lines.append(row([str(seed), str(lr), dtype, "either", "pose-only", f"{base['bleu4']:.2f}",
                                  "–", "–", "–", "–", f"{minutes:.1f}"]))
                print(lines[-1], flush=True)
                for kind in args.worlds:
                    for fusion in args.fusion_types:
                        started = time.time()
                        m = train_and_test(worlds[kind], Path(args.work) / "runs" / f"{kind}_{fusion}_{tag}",
                                           fusion, seed, lr, args.epochs, dtype)
                        w = m["withheld"]
                        lines.append(row([str(seed), str(lr), dtype, kind, fusion, f"{m['bleu4']:.2f}",
                                          f"{w['bleu4']:.2f}", f"{m['bleu4'] - base['bleu4']:+.2f}",
                                          f"{m['bleu4'] - w['bleu4']:+.2f}",
                                          f"{m['gate_described']:.3f} / {m['gate_undescribed']:.3f}",
                                          f"{(time.time() - started) / 60:.1f}"]))
                        print(lines[-1], flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[LR])
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--fusion-types", nargs="+", default=["gating", "cross_attn"])
    parser.add_argument("--worlds", nargs="+", default=["informative", "noise"])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--work", default="out/fusion_study")
    parser.add_argument("--out", default="bench/results/fusion_study.md")
    args = parser.parse_args()
    lines = study(args)
    header = [f"# Fusion study ({time.strftime('%Y-%m-%d')})", "",
              f"Machine: {platform.processor() or platform.machine()}, CPU only; command: "
              f"`python bench/fusion_study.py {' '.join(sys.argv[1:])}`.",
              f"Recipe: uni_sign_ext/study.py ({args.epochs} epochs). gain = test BLEU-4 − pose-only's "
              f"(same seed, lr, dtype); withheld cost = test BLEU-4 − the same model's with descriptions "
              f"withheld. The gate starts at {INITIAL_GATE:.3f} on every frame.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""A run's per-epoch record: `log.txt` (one JSON line per epoch) and `curves.png`.

The keys upstream Uni-Sign writes stay as they are (`train_loss`, `train_lr`, `test_<metric>` for the
*dev* split's metrics, `epoch`, `n_parameters`), so existing tooling keeps reading them; we add the
dev loss and gate means under the same `test_` prefix, skip counts and seconds. A gate mean is `null`
when no frame of that kind was seen.

Compare runs on one figure:

    python -m uni_sign_ext.run_log plot out/pose_only/log.txt out/descriptions/log.txt -o cmp.png
"""
import argparse
import json
from pathlib import Path

LOG_NAME = "log.txt"
CURVES_NAME = "curves.png"
PANELS = (("train_loss", "training loss"), ("test_bleu4", "dev BLEU-4"),  # a run has the panels of its --task
          ("test_top1_acc_pi", "dev top-1 accuracy (per instance)"), ("test_wer", "dev WER"),
          (("test_gate_described", "test_gate_undescribed"), "dev mean gate"))


def epoch_record(epoch, train, dev, n_parameters, **extra):
    """Upstream's keys from `train` ({'loss', 'lr'}) and `dev` (metrics), plus `extra` as given."""
    record = {f"train_{k}": v for k, v in train.items()}
    record.update({f"test_{k}": v for k, v in dev.items()})
    record.update(epoch=epoch, n_parameters=n_parameters, **extra)
    return record


def append(output_dir, record):
    with open(Path(output_dir) / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read(path):
    """The epoch records of a log.txt, in file order (lines that are not epoch records are ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "epoch" in record:
            records.append(record)
    return records


def keep_epochs_before(output_dir, epoch):
    """Drop records of `epoch` and later (a resumed run redoes them; its lines must not appear twice)."""
    path = Path(output_dir) / LOG_NAME
    if path.is_file():
        kept = [r for r in read(path) if r["epoch"] < epoch]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def plot(runs, out_path):
    """One figure, a panel per curve; `runs` maps a label to its records. Panels no run has are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(keys if isinstance(keys, tuple) else (keys,), title) for keys, title in PANELS]
    panels = [(keys, title) for keys, title in panels
              if any(r.get(k) is not None for records in runs.values() for r in records for k in keys)]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.5), squeeze=False)
    for ax, (keys, title) in zip(axes[0], panels):
        for label, records in runs.items():
            for key in keys:
                points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
                if points:
                    name = label if len(keys) == 1 else f"{label}: {key.rsplit('_', 1)[-1]}"
                    ax.plot(*zip(*points), marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def plot_run(output_dir):
    """curves.png next to a run's log.txt."""
    output_dir = Path(output_dir)
    plot({output_dir.name: read(output_dir / LOG_NAME)}, output_dir / CURVES_NAME)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m uni_sign_ext.run_log", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    plot_cmd = commands.add_parser("plot", help="plot several runs' log.txt on one figure")
    plot_cmd.add_argument("logs", nargs="+", help="log.txt files (one per run)")
    plot_cmd.add_argument("-o", "--out", default="curves.png", help="figure to write (default: %(default)s)")
    plot_cmd.add_argument("--labels", nargs="+", help="one label per log (default: the run folder's name)")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.logs):
        parser.error(f"--labels: {len(args.labels)} labels for {len(args.logs)} logs; give one per log")
    runs = {}
    for i, log in enumerate(args.logs):
        path = Path(log)
        if not path.is_file():
            parser.error(f"{log}: no such file; give the log.txt a run wrote in its --output_dir")
        records = read(path)
        if not records:
            parser.error(f"{log}: no epoch records (one JSON line per epoch, as fine_tuning.py writes)")
        label = args.labels[i] if args.labels else path.parent.name
        runs[label if label and label not in runs else str(path)] = records
    plot(runs, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

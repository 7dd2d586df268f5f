"""Start-up checks of numeric flags and run-time guards against non-finite numbers.

A flag that cannot work must stop the run before any data is read, with one line naming the flag
and the fix; a loss or a model that turned NaN must never be trained on further nor saved as best.
"""
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

NONFINITE_ACTIONS = ("stop", "skip")
MAX_LR = 1e30  # Adam's first step divides the rate by 1 - β1: a float32 overflow (a traceback) from ~3e37
LR_RANGE = f"in [0, {MAX_LR:g}] (more overflows the optimizer's float32 step)"


def add_guard_args(parser):
    parser.add_argument("--nonfinite_loss", choices=NONFINITE_ACTIONS, default="stop",
                        help="on a NaN/inf training loss: stop the run naming the batch (default), or skip "
                             "the step and count it")
    return parser


# flag → (test, what it must be); names are argparse's attribute names, messages use the flag spelling.
_RULES = {
    "batch_size": (lambda v: v >= 1, "--batch-size", "at least 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "--gradient-accumulation-steps", "at least 1"),
    "epochs": (lambda v: v >= 0, "--epochs", "0 or more"),
    "max_length": (lambda v: v >= 1, "--max_length", "at least 1 (frames per clip)"),
    "num_workers": (lambda v: v >= 0, "--num_workers", "0 or more"),
    "quick_break": (lambda v: v >= 0, "--quick_break", "0 (off) or more"),
    "hidden_dim": (lambda v: v >= 1, "--hidden_dim", "at least 1"),
    "lr": (lambda v: 0 <= v <= MAX_LR, "--lr", LR_RANGE),
    "min_lr": (lambda v: 0 <= v <= MAX_LR, "--min-lr", LR_RANGE),
    "warmup_epochs": (lambda v: math.isfinite(v) and v >= 0, "--warmup-epochs", "a finite number ≥ 0"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "--weight-decay", "a finite number ≥ 0"),
    "opt_eps": (lambda v: math.isfinite(v) and v > 0, "--opt-eps", "a finite number > 0"),
    "gradient_clipping": (lambda v: math.isfinite(v) and v >= 0, "--gradient-clipping", "a finite number ≥ 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "--label_smoothing", "in [0, 1)"),
}


def flag_problems(args):
    """Every numeric flag outside its usable range → ['--flag V: must be …', …] (empty when all usable)."""
    problems = []
    for name, (usable, flag, must) in _RULES.items():
        value = getattr(args, name, None)
        if value is not None and not usable(value):
            problems.append(f"{flag} {value}: must be {must}")
    betas = getattr(args, "opt_betas", None)
    if betas is not None and (len(betas) != 2 or not all(0 <= b < 1 for b in betas)):
        problems.append(f"--opt-betas {' '.join(map(str, betas))}: must be two numbers in [0, 1)")
    return problems


def check_numeric_flags(args):
    """Stop with one line per unusable flag, before anything is loaded."""
    problems = flag_problems(args)
    if problems:
        raise SystemExit("; ".join(problems) + " (fix the flag and rerun)")


class NonFiniteError(RuntimeError):
    """Training produced a NaN/inf; the message names where and what to do."""


def latest_checkpoint(output_dir):
    """The newest *.pth in the run's folder (what to restart from), or None."""
    files = sorted(Path(output_dir).glob("*.pth"), key=lambda p: p.stat().st_mtime) if output_dir else []
    return files[-1] if files else None


def _restart_hint(output_dir):
    last = latest_checkpoint(output_dir)
    return f"last checkpoint saved: {last}" if last else "no checkpoint was saved yet"


def finite_on_every_rank(loss):
    """Whether the loss is finite on all ranks: ranks must skip or stop together, or DeepSpeed hangs."""
    import torch.distributed as dist

    ok = torch.tensor([float(torch.isfinite(loss.detach()).all())], device=loss.device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)


def loss_is_usable(loss, names, epoch, step, args):
    """False when the step must be skipped (--nonfinite_loss skip); raises NonFiniteError to stop.

    Checked before backward, so a NaN never reaches the weights or the optimizer state.
    """
    if finite_on_every_rank(loss):
        return True
    where = (f"epoch {epoch} step {step + 1}: the training loss is {loss.item()} on some rank (this rank's "
             f"samples: {', '.join(names) or 'none'})")
    if args.nonfinite_loss == "skip":
        return False
    raise NonFiniteError(f"{where}; stopped before the weights were updated ({_restart_hint(args.output_dir)}). "
                         "Check those samples, lower --lr, use --dtype fp32, or pass --nonfinite_loss skip")


def refuse_nonfinite_model(state, path, output_dir):
    """Never write a NaN/inf state dict: it would replace a good checkpoint (even best_checkpoint.pth)."""
    bad = nonfinite_entries(state)
    if bad:
        raise NonFiniteError(f"the model has NaN/inf weights ({', '.join(bad)}); {path} was not written "
                             f"({_restart_hint(output_dir)}). Lower --lr or use --dtype fp32 and restart from it")


def nonfinite_entries(state, shown=5):
    """Names of the first `shown` floating tensors of a state dict holding NaN or inf."""
    bad = [name for name, t in state.items()
           if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    return bad[:shown]


def user_error_types():
    """The errors that are the user's to fix: shown as their one-line message, never a traceback."""
    from uni_sign_ext.atomic_io import DiskWriteError
    from uni_sign_ext.checkpoint import CheckpointError
    from uni_sign_ext.feature_cache import CorruptCacheError, NonFiniteFeaturesError, StaleCacheError
    from uni_sign_ext.labels import LabelFileError

    return (DiskWriteError, CheckpointError, CorruptCacheError, NonFiniteFeaturesError, StaleCacheError,
            LabelFileError, NonFiniteError)


@contextmanager
def exit_on_user_error():
    """Turn a user error into `error: <message>` on stderr and exit status 2."""
    try:
        yield
    except user_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

"""Start-up checks of numeric flags and run-time guards against non-finite numbers.

A flag that cannot work must stop the run before any data is read, with one line naming the flag
and the fix; a loss or a model that turned NaN must never be trained on further nor saved as best.
"""
import math

import torch

NONFINITE_ACTIONS = ("stop", "skip")


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
    "lr": (lambda v: math.isfinite(v) and v >= 0, "--lr", "a finite number ≥ 0"),
    "min_lr": (lambda v: math.isfinite(v) and v >= 0, "--min-lr", "a finite number ≥ 0"),
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


def check_run_args(args):
    """Stop with one line per unusable flag, before anything is loaded."""
    problems = flag_problems(args)
    if problems:
        raise SystemExit("; ".join(problems) + " (fix the flag and rerun)")


class NonFiniteError(RuntimeError):
    """Training produced a NaN/inf; the message names where and what to do."""


def all_finite(tensors):
    """True when every floating tensor is free of NaN and inf (cheap: one reduction per tensor)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if torch.is_tensor(t) and t.is_floating_point())


def nonfinite_parameters(module, shown=5):
    """Names of the first `shown` parameters/buffers holding NaN or inf."""
    bad = [name for name, t in list(module.named_parameters()) + list(module.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    return bad[:shown]


def finite_on_every_rank(loss):
    """Whether the loss is finite on all ranks: ranks must skip or stop together, or DeepSpeed hangs."""
    import torch.distributed as dist

    ok = torch.tensor([float(torch.isfinite(loss.detach()).all())], device=loss.device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)

"""`--resume`: continue an interrupted run from its output folder, as if it had never stopped.

Each finished epoch leaves `<output_dir>/resume/epoch_<n>/`: DeepSpeed's engine checkpoint (model,
optimizer, LR scheduler), the epoch, the best dev score and its epoch, and every rank's random streams (so data
order, frame sampling and dropout continue exactly). The two newest are kept: a checkpoint cut short
(a node lost mid-write) falls back to the previous one with a warning. The `{'model': ...}` files
upstream users load are written as before; this folder is only for resuming.
"""
import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)
RESUME_DIR = "resume"
KEEP = 2
TAG = re.compile(r"epoch_(\d+)$")


def _rank():
    return dist.get_rank() if dist.is_initialized() else 0


def rng_state(model):
    """The global streams, and the private ones of the model's modules that keep one (get_rng_state)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "modules": {name: m.get_rng_state() for name, m in model.named_modules() if hasattr(m, "get_rng_state")}}


def set_rng_state(state, model):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, module in model.named_modules():
        if name in state["modules"]:
            module.set_rng_state(state["modules"][name])


def tags(folder):
    """The epoch_<n> checkpoints under `folder`, newest first."""
    found = [(int(m.group(1)), p.name) for p in Path(folder).glob("epoch_*") if (m := TAG.match(p.name))]
    return [name for _, name in sorted(found, reverse=True)]


def save(engine, output_dir, epoch, best_score, best_epoch):
    """Called by every rank at the very end of an epoch (nothing after it may draw random numbers)."""
    folder = Path(output_dir) / RESUME_DIR
    tag = f"epoch_{epoch}"
    (folder / tag).mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(engine.module), folder / tag / f"rng_rank{_rank()}.pt")
    engine.save_checkpoint(str(folder), tag=tag, client_state={"epoch": epoch, "best_score": best_score,
                                                                  "best_epoch": best_epoch})
    if dist.is_initialized():
        dist.barrier()
    if _rank() == 0:
        for old in tags(folder)[KEEP:]:
            shutil.rmtree(folder / old, ignore_errors=True)


def _load(engine, folder, tag):
    """(client state, rng state) of one checkpoint, or the reason it cannot be used."""
    try:
        path, client = engine.load_checkpoint(str(folder), tag=tag)
        if path is None:
            return None, "DeepSpeed found no complete checkpoint"
        rng = torch.load(folder / tag / f"rng_rank{_rank()}.pt", weights_only=False)
        return (client, rng), None
    except Exception as exc:  # a truncated file fails in torch.load/pickle with many exception types
        return None, f"{type(exc).__name__}: {exc}"


def load(engine, output_dir):
    """Restore the newest readable checkpoint on every rank; returns (next epoch, best dev score, its epoch).

    None when the run has no checkpoint yet (it then starts from epoch 0). Ranks agree on which
    checkpoint they use: one rank's unreadable file sends all of them to the previous one.
    """
    folder = Path(output_dir) / RESUME_DIR
    candidates = tags(folder)
    for i, tag in enumerate(candidates):
        loaded, reason = _load(engine, folder, tag)
        ok = torch.tensor([int(loaded is not None)])
        if dist.is_initialized():
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if ok.item():
            client, rng = loaded
            set_rng_state(rng, engine.module)
            return client["epoch"] + 1, client["best_score"], client["best_epoch"]
        fallback = f"falling back to {candidates[i + 1]}" if i + 1 < len(candidates) else "no older one left"
        logger.warning("--resume: checkpoint %s is unusable%s; %s", folder / tag,
                       f" ({reason})" if reason else " on another rank", fallback)
    if candidates:
        raise SystemExit(f"--resume: no usable checkpoint in {folder} (see the warnings above); "
                         "drop --resume to start the run again from epoch 0")
    return None

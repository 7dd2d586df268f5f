"""Loading `{'model': state_dict}` checkpoints with upstream's strictness and clear reports.

Only description-fusion keys (`text_fusion.`) may be missing, and only when fusion is enabled: an
upstream stage-1/2 checkpoint then loads with the fusion freshly initialised (reported). Any other
missing or unexpected key is an error that lists the keys.
"""
import logging
import os

import torch

logger = logging.getLogger(__name__)
FUSION_PREFIX = "text_fusion."
KEYS_SHOWN = 20


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the model; the message names the file and the keys."""


def _list(keys):
    keys = sorted(keys)
    more = f" … and {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else ""
    return ", ".join(keys[:KEYS_SHOWN]) + more


def read_state_dict(path):
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path}: expected a dict with a 'model' state dict")
    return checkpoint["model"]


def load_model_checkpoint(model, path):
    """`--finetune`: strict load, except fusion keys may be missing when fusion is enabled."""
    return load_model_state(model, read_state_dict(path), path)


def load_model_state(model, state, path):
    """load_model_checkpoint() on a state dict already read from `path` → the fusion keys left fresh."""
    has_fusion = any(k.startswith(FUSION_PREFIX) for k in model.state_dict())
    if not has_fusion and any(k.startswith(FUSION_PREFIX) for k in state):
        raise CheckpointError(f"{path} holds description-fusion weights ({FUSION_PREFIX}*): load it "
                              "with --use_descriptions (and the same --text_fusion_type).")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    fusion_missing = [k for k in missing if k.startswith(FUSION_PREFIX)]
    other_missing = [k for k in missing if not k.startswith(FUSION_PREFIX)]
    if other_missing or unexpected:
        problems = []
        if other_missing:
            problems.append(f"missing keys ({len(other_missing)}): {_list(other_missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {_list(unexpected)}")
        raise CheckpointError(f"{path} does not match the model: " + "; ".join(problems))
    if fusion_missing:
        logger.warning("%s has no description-fusion weights: %d %s* keys start fresh (identity "
                       "at step 0)", path, len(fusion_missing), FUSION_PREFIX)
    return fusion_missing


def load_fusion_checkpoint(model, path):
    """`--fusion_checkpoint`: the text_fusion.* weights of a fusion-only or full checkpoint."""
    state = {k: v for k, v in read_state_dict(path).items() if k.startswith(FUSION_PREFIX)}
    expected = {k for k in model.state_dict() if k.startswith(FUSION_PREFIX)}
    if not expected:
        raise CheckpointError(f"--fusion_checkpoint {path} needs --use_descriptions")
    if set(state) != expected:
        raise CheckpointError(f"{path} does not match this fusion module (--text_fusion_type?): "
                              f"missing {_list(expected - set(state)) or 'none'}; "
                              f"unexpected {_list(set(state) - expected) or 'none'}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    logger.info("loaded %d description-fusion tensors from %s", len(state), path)

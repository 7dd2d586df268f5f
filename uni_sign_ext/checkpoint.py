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
# What --rgb_support adds (upstream's RGB-pose checkpoints hold all of them).
RGB_PREFIXES = ("rgb_support_backbone.", "rgb_proj.", "fusion_pose_rgb_linear.", "fusion_pose_rgb_DA.",
                "fusion_gate.")


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the model; the message names the file and the keys."""


def _list(keys):
    keys = sorted(keys)
    more = f" … and {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else ""
    return ", ".join(keys[:KEYS_SHOWN]) + more


def checkpoint_record(state, args, epoch):
    """What a saved checkpoint holds: upstream's 'model' key (all that loading reads), plus how it was
    made: the run's flags (as plain values, so weights_only loading still works) and the epoch."""
    plain = {k: v if isinstance(v, (bool, int, float, str, type(None))) else str(v) for k, v in vars(args).items()}
    return {"model": state, "args": plain, "epoch": epoch}


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


ARCHITECTURE_FLAGS = "--hidden_dim, --mt5_path, --use_descriptions, --text_fusion_type"


def fusion_kind(keys):
    """The --text_fusion_type a state dict's keys were made by, or None without fusion weights."""
    fusion = [k for k in keys if k.startswith(FUSION_PREFIX)]
    if not fusion:
        return None
    return "cross_attn" if any(k.startswith(FUSION_PREFIX + "cross_attn.") for k in fusion) else "gating"


def check_architecture(model, state, path):
    """Refuse, before loading anything, a checkpoint trained with other architecture flags (a partly
    matching fusion, gating weights under --text_fusion_type cross_attn, would leave random weights;
    a shape mismatch names the flags to compare) or holding NaN/inf weights."""
    expected = model.state_dict()
    rgb_ours = any(k.startswith(RGB_PREFIXES) for k in expected)
    rgb_theirs = any(k.startswith(RGB_PREFIXES) for k in state)
    if rgb_theirs and not rgb_ours:
        raise CheckpointError(f"{path} is an RGB-pose checkpoint (rgb_support_backbone.*, fusion_gate.* ...): "
                              "load it with --rgb_support")
    ours = {k for k in expected if k.startswith(FUSION_PREFIX)}
    theirs = {k for k in state if k.startswith(FUSION_PREFIX)}
    if theirs and not ours:
        raise CheckpointError(f"{path} holds description-fusion weights ({FUSION_PREFIX}*): load it "
                              "with --use_descriptions (and the same --text_fusion_type).")
    if theirs and theirs != ours:
        kind = fusion_kind(theirs)
        ours_kind = getattr(getattr(model, "text_fusion", None), "fusion_type", "of this run")
        raise CheckpointError(f"{path} holds {kind} fusion weights, which do not fit --text_fusion_type "
                              f"{ours_kind}: pass --text_fusion_type "
                              f"{kind} (missing {_list(ours - theirs) or 'none'}; unexpected "
                              f"{_list(theirs - ours) or 'none'})")
    from uni_sign_ext.guards import nonfinite_entries

    bad = nonfinite_entries(state)
    if bad:
        raise CheckpointError(f"{path} holds NaN/inf weights ({', '.join(bad)}): it cannot be trained or "
                              "evaluated; use an earlier checkpoint")
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
                  if k in expected and torch.is_tensor(v) and v.shape != expected[k].shape]
    if mismatched:
        raise CheckpointError(f"{path} was trained with other architecture flags ({ARCHITECTURE_FLAGS}): "
                              f"{len(mismatched)} tensors differ in shape (checkpoint vs this run), e.g. "
                              f"{'; '.join(mismatched[:3])}; pass the flags it was trained with")


def load_model_checkpoint(model, path):
    """`--finetune`: strict load, except that modules the checkpoint has no key of at all start fresh: the
    description fusion (an upstream stage-1/2 checkpoint under --use_descriptions) and the RGB-pose modules
    (a stage-1, pose-only checkpoint under --rgb_support: stage 2's start). → the keys left fresh."""
    return load_model_state(model, read_state_dict(path), path)


def has_rgb_weights(state):
    """Does this state dict hold the RGB-pose modules (an RGB-pose, stage-2 or later, checkpoint)?"""
    return any(k.startswith(RGB_PREFIXES) for k in state)


def load_model_state(model, state, path):
    """load_model_checkpoint() on a state dict already read from `path`."""
    check_architecture(model, state, path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    fresh = [FUSION_PREFIX] + ([] if has_rgb_weights(state) else list(RGB_PREFIXES))
    started_fresh = [k for k in missing if k.startswith(tuple(fresh))]
    other_missing = [k for k in missing if k not in started_fresh]
    if other_missing or unexpected:
        problems = []
        if other_missing:
            problems.append(f"missing keys ({len(other_missing)}): {_list(other_missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {_list(unexpected)}")
        raise CheckpointError(f"{path} does not match the model: " + "; ".join(problems))
    fusion_missing = [k for k in started_fresh if k.startswith(FUSION_PREFIX)]
    if fusion_missing:
        logger.warning("%s has no description-fusion weights: %d %s* keys start fresh (identity "
                       "at step 0)", path, len(fusion_missing), FUSION_PREFIX)
    rgb_missing = len(started_fresh) - len(fusion_missing)
    if rgb_missing:
        logger.warning("%s is a pose-only checkpoint: %d RGB-pose keys start fresh (the backbone from its "
                       "ImageNet weights, the zero gate: identity at step 0), as stage 2 starts from stage 1",
                       path, rgb_missing)
    return started_fresh


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

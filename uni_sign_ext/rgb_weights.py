"""Where the RGB backbone's starting weights come from; never a silent random start.

Upstream builds `efficientnet_b0(pretrained=True)` (ImageNet weights, downloaded at every build) and a
`--finetune` checkpoint then overwrites them. Nothing is downloaded here, so, in this order:
`--rgb_backbone_weights PATH` if given; else, with `--finetune` of an RGB-pose checkpoint, the checkpoint (it
must hold every `rgb_support_backbone.*` key: the load is strict); else torchvision's own cache file of the ImageNet
weights, if present; else the run stops and names the flag.
"""
import os

import torch

# torchvision's file names for EfficientNet_B0_Weights.IMAGENET1K_V1 (since 0.13; earlier releases)
IMAGENET_FILES = ("efficientnet_b0_rwightman-7f5810bc.pth", "efficientnet_b0_rwightman-3dd342df.pth")
PREFIXES = ("rgb_support_backbone.", "features.")


class BackboneWeightsError(SystemExit):
    """A missing or unusable backbone weights file; the message says what to pass."""


def cached_imagenet_weights():
    """torchvision's cached ImageNet EfficientNet-B0 file under $TORCH_HOME/hub/checkpoints, or None."""
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    for name in IMAGENET_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def backbone_weights_source(args, finetune_state=None):
    """The file the backbone is initialised from, or None when nothing needs loading (no --rgb_support,
    or an RGB-pose --finetune checkpoint, `finetune_state`, supplies the weights; a pose-only one, stage 2's
    start, does not). Raises BackboneWeightsError when there is none."""
    from uni_sign_ext.checkpoint import has_rgb_weights

    if not getattr(args, "rgb_support", False):
        return None
    path = getattr(args, "rgb_backbone_weights", "")
    if path:
        if not os.path.isfile(path):
            raise BackboneWeightsError(f"--rgb_backbone_weights {path}: file not found")
        return path
    if getattr(args, "finetune", "") and finetune_state is not None and has_rgb_weights(finetune_state):
        return None
    cached = cached_imagenet_weights()
    if cached:
        return cached
    raise BackboneWeightsError(
        "--rgb_support needs the EfficientNet-B0 ImageNet weights and nothing is downloaded here: pass "
        f"--rgb_backbone_weights PATH (torchvision's {IMAGENET_FILES[0]}), place that file in "
        f"{os.path.join(torch.hub.get_dir(), 'checkpoints')}, or start from an RGB-pose checkpoint with --finetune "
        "(a pose-only one, as stage 2 starts from stage 1, needs the ImageNet weights too).")


def backbone_state(state):
    """A state dict of torchvision's efficientnet_b0 (features.*, classifier.*), of its features alone
    (0.*…8.*), of a Uni-Sign RGB-pose model (rgb_support_backbone.0.*) or of the backbone (0.0.*), keyed
    as `rgb_support_backbone` expects (0.<stage>...); other keys (classifier, pose, mT5) are dropped."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    out = {}
    for key, value in state.items():
        if key.startswith("rgb_support_backbone."):
            out[key[len("rgb_support_backbone."):]] = value
        elif key.startswith("features."):
            out["0." + key[len("features."):]] = value
    if not out and "0.0.0.weight" in state:  # already the backbone's own keys
        out = dict(state)
    elif not out:  # the features Sequential alone (0.0.weight … 8.1.bias)
        out = {"0." + k: v for k, v in state.items()}
    return out


def load_backbone_weights(backbone, path):
    """Strictly load `path` into the backbone; a file that doesn't fit names the keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneWeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: expected a state dict")
    state = backbone_state(state)
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise BackboneWeightsError(
            f"{path} is not EfficientNet-B0 weights: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of another shape (e.g. {wrong[:3]})")
    backbone.load_state_dict(state, strict=True)
    return path

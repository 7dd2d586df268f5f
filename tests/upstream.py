"""Run upstream Uni-Sign's own code beside ours: find it, import it under distinct names, stub what cannot load.

Upstream (pinned commit 2c9028f) is found at $UNISIGN_UPSTREAM or at ../shared/upstream next to the repo;
when neither exists the tests that need it are skipped with that reason. Its top-level modules are called
`config`, `utils`, `datasets`, `models` like ours, so they are imported with ours moved out of
sys.modules and then moved aside again: upstream's modules keep their references to each other, ours are
left exactly as they were. Its RGB path imports torchvision/decord/einops and its optimizer timm; pose-only
runs never call them, so minimal stand-ins are installed for the import only, when the real package is absent.
"""
import importlib
import importlib.machinery
import os
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_MODULES = ("config", "utils", "datasets", "models", "SLRT_metrics")
# Names upstream's files import that would clash with ours or with each other across the swap.
SWAPPED = UPSTREAM_MODULES + ("fine_tuning", "stgcn_layers", "stgcn_layers.gcn_utils",
                              "stgcn_layers.stgcn_block", "deformable_attention_2d", "external_metrics",
                              "external_metrics.Rouge", "external_metrics.sacrebleu",
                              "external_metrics.mscoco_rouge")


def upstream_dir():
    """The upstream checkout, or None."""
    candidates = [os.environ.get("UNISIGN_UPSTREAM"), REPO.parent / "shared" / "upstream"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "models.py").is_file():
            return Path(candidate)
    return None


def require_upstream():
    """The upstream checkout; skips the calling test (with the reason) when it is absent."""
    path = upstream_dir()
    if path is None:
        pytest.skip("upstream Uni-Sign not found: set UNISIGN_UPSTREAM to a checkout of commit 2c9028f "
                    "(or place it at ../shared/upstream)")
    return path


def _stub(name, **attributes):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # transformers probes find_spec
    module.__dict__.update(attributes)
    return module


class _Unused:
    """Stands in for RGB-path classes; calling it would mean a pose-only run reached the RGB path."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise AssertionError("upstream's RGB path was reached in a pose-only test")


def _stubs():
    transforms = _stub("torchvision.transforms", Compose=_Unused, ToTensor=_Unused, Normalize=_Unused)
    optim = _stub("timm.optim", create_optimizer=_Unused())
    layers_torch = _stub("einops.layers.torch", Rearrange=_Unused)
    layers = _stub("einops.layers", torch=layers_torch)
    return {
        # these two come with deepspeed and sacrebleu today; stubbed only should that change
        "einops": _stub("einops", rearrange=_Unused(), repeat=_Unused(), layers=layers),
        "einops.layers": layers,
        "einops.layers.torch": layers_torch,
        "portalocker": _stub("portalocker"),
        "torchvision": _stub("torchvision", transforms=transforms, models=_stub("torchvision.models")),
        "torchvision.transforms": transforms,
        "decord": _stub("decord", VideoReader=_Unused, cpu=_Unused()),
        "timm": _stub("timm", optim=optim),
        "timm.optim": optim,
    }


_loaded = {}


def load_upstream(path=None):
    """Upstream's modules as a namespace: .config .utils .datasets .models .SLRT_metrics .fine_tuning."""
    path = Path(path or require_upstream()).resolve()
    if path in _loaded:
        return _loaded[path]
    import transformers  # noqa: F401  (imported first, so its package probes never see the stubs)

    saved = {name: sys.modules.pop(name) for name in SWAPPED if name in sys.modules}
    stubs = {name: m for name, m in _stubs().items()
             if name.split(".")[0] not in sys.modules and importlib.util.find_spec(name.split(".")[0]) is None}
    sys.modules.update(stubs)
    sys.path.insert(0, str(path))
    try:
        modules = {name: importlib.import_module(name) for name in UPSTREAM_MODULES + ("fine_tuning",)}
    finally:
        sys.path.remove(str(path))
        for name in SWAPPED + tuple(stubs):
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    _loaded[path] = types.SimpleNamespace(path=path, **modules)
    return _loaded[path]


def upstream_args(up=None, argv=(), **overrides):
    """Upstream's own parser (of `up`, default: the reference checkout) on argv, then overrides."""
    up = up or load_upstream()
    args = up.utils.get_args_parser().parse_args(list(argv))
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def point_at(up, mt5_path, pose_dirs):
    """Aim upstream's config-derived module globals at a mini-world (its config.py holds relative paths)."""
    up.models.mt5_path = str(mt5_path)
    up.datasets.pose_dirs = dict(pose_dirs)


def seeded_items(dataset, indices, seed):
    """dataset[i] for each index after seeding python's and numpy's streams (frame sampling draws from them)."""
    random.seed(seed)
    np.random.seed(seed)
    return [dataset[i] for i in indices]


class CpuEngine:
    """Stands in for the DeepSpeed engine upstream's train_one_epoch/evaluate drive (fp32, one CPU rank)."""

    def __init__(self, model, optimizer):
        self.module, self.optimizer = model, optimizer

    def __call__(self, *inputs):
        return self.module(*inputs)

    def train(self, mode=True):
        self.module.train(mode)

    def eval(self):
        self.module.eval()

    def bfloat16_enabled(self):
        return False

    def backward(self, loss):
        loss.backward()

    def step(self):
        self.optimizer.step()
        self.optimizer.zero_grad()


_models_loaded = {}


def load_upstream_models(path=None):
    """Upstream's `models` module alone (with the config, stgcn_layers and deformable_attention_2d it
    imports), real torchvision and einops required: its RGB path, without utils' deepspeed or datasets'
    decord. Imported under the swap load_upstream() uses, so ours stay as they were."""
    path = Path(path or require_upstream()).resolve()
    if path in _models_loaded:
        return _models_loaded[path]
    import transformers  # noqa: F401

    saved = {name: sys.modules.pop(name) for name in SWAPPED if name in sys.modules}
    sys.path.insert(0, str(path))
    try:
        models = importlib.import_module("models")
    finally:
        sys.path.remove(str(path))
        for name in SWAPPED:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    _models_loaded[path] = models
    return models

"""Shared test fixtures: one offline mini-world per test session, and argument helpers."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def mini_world(tmp_path_factory):
    """The offline mini-world (tiny mT5, labels, poses, descriptions) in upstream's folder layout."""
    from uni_sign_ext.fixture import build_mini_world

    return build_mini_world(tmp_path_factory.mktemp("mini_world"), samples_per_split=12, seed=0)


@pytest.fixture(scope="session")
def rgb_world(tmp_path_factory):
    """The mini-world with CSL_Daily's videos (--videos) and normalised CSL_Daily pose files, for --rgb_support."""
    from uni_sign_ext.fixture import build_mini_world

    return build_mini_world(tmp_path_factory.mktemp("rgb_world"), samples_per_split=12, seed=0, videos=True)


@pytest.fixture(scope="session")
def tiny_mt5(mini_world):
    return str(mini_world / "pretrained_weight" / "mt5-base")


def config_rooted_at(root, monkeypatch):
    """Point config.py's paths at `root` for one test, as UNISIGN_ROOT does for the scripts (a generator:
    a fixture yields from it)."""
    import importlib

    import config

    monkeypatch.setenv("UNISIGN_ROOT", str(root))
    importlib.reload(config)
    yield root
    monkeypatch.delenv("UNISIGN_ROOT")
    importlib.reload(config)


@pytest.fixture
def world_root(mini_world, monkeypatch):
    yield from config_rooted_at(mini_world, monkeypatch)


def parse_args(*argv):
    """fine_tuning.py's parser on the given flags (paths resolved against the current config)."""
    import importlib

    import config
    import utils

    importlib.reload(config)
    importlib.reload(utils)
    return utils.get_args_parser().parse_args(list(argv))

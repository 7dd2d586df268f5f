"""The repo stands alone: nothing refers to files beside it, and a fresh clone builds the mini-world."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils import get_args_parser

REPO = Path(__file__).resolve().parents[1]
# Built from pieces, so that this file does not match itself.
OUTSIDE = ["../" + "shared", "/work/" + "shared", "UNISIGN_" + "SHARED", "shared" + "/spec", "shared" + "/seeds",
           "shared" + "/data", "shared" + "/DESIGN", "shared" + "/upstream"]
# The one file allowed to look beside the repo: the harness that runs upstream's own code next to ours.
ALLOWED = {"tests/upstream.py"}


def git(*args, cwd=REPO):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def tracked_files():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [name for name in git("ls-files", "--cached", "--others", "--exclude-standard").splitlines()
            if (REPO / name).is_file()]


def test_nothing_refers_to_files_beside_the_repo(tracked_files):
    offenders = []
    for name in tracked_files:
        if name in ALLOWED:
            continue
        text = (REPO / name).read_bytes().decode("utf-8", errors="replace")
        offenders += [f"{name}: {pattern}" for pattern in OUTSIDE if pattern in text]
    assert not offenders


def test_flags_doc_names_every_flag():
    doc = (REPO / "docs" / "flags.md").read_text(encoding="utf-8")
    missing = [option for action in get_args_parser()._actions for option in action.option_strings
               if f"`{option}`" not in doc]
    assert not missing


def test_a_fresh_clone_builds_the_mini_world(tracked_files, tmp_path):
    clone = tmp_path / "empty" / "Uni-Sign"
    git("clone", "--quiet", "--no-hardlinks", str(REPO), str(clone), cwd=tmp_path)
    env = dict(os.environ, PYTHONPATH=str(clone))
    env.pop("UNISIGN_ROOT", None)
    proc = subprocess.run([sys.executable, "-c", "import uni_sign_ext, runpy, sys; print(uni_sign_ext.__file__); "
                           "sys.argv = ['fixture', '--out', 'world', '--samples-per-split', '2']; "
                           "runpy.run_module('uni_sign_ext.fixture', run_name='__main__')"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == str(clone / "uni_sign_ext" / "__init__.py")  # the clone's code ran
    for path in ["pretrained_weight/mt5-base/config.json", "data/CSL_Daily/labels.train",
                 "data/How2Sign/labels.test", "dataset/CSL_Daily/pose_format", "description/CSL_Daily"]:
        assert (clone / "world" / path).exists(), path


def test_uni_sign_ext_never_imports_the_top_level_files():
    """The package must also work inside a user's own Uni-Sign checkout (patches/), whose top-level files are
    upstream's: it reads their settings only through arguments (e.g. layout.DataLayout.from_config)."""
    import ast

    top_level = {p.stem for p in REPO.glob("*.py")}
    offenders = []
    for path in sorted((REPO / "uni_sign_ext").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in top_level]
    assert top_level >= {"config", "datasets", "models", "utils", "fine_tuning"} and not offenders, offenders

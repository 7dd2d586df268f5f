"""Bring the description layer to an upstream Uni-Sign checkout (commit 2c9028f) with GNU patch.

    python -m uni_sign_ext.patches check  /path/to/Uni-Sign   # dry run: applicable, applied or drifted
    python -m uni_sign_ext.patches apply  /path/to/Uni-Sign   # all files or none; again: nothing to do
    python -m uni_sign_ext.patches revert /path/to/Uni-Sign   # the files back byte for byte

The *.patch files beside this module add one-line calls into uni_sign_ext.upstream_hooks to upstream's
utils.py, datasets.py, models.py and fine_tuning.py. Their context lines must match exactly (no fuzz;
lines may have moved, as in a checkout with other edits): a checkout that has drifted is refused,
naming the files and hunks that do not fit.
"""
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PATCH_DIR = Path(__file__).resolve().parent
PATCHES = tuple(sorted(PATCH_DIR.glob("*.patch")))
UPSTREAM_COMMIT = "2c9028f"


class PatchError(RuntimeError):
    """Why the patches cannot be applied or reverted; one line per problem."""


@dataclass
class State:
    """What a checkout looks like to the patches."""
    applicable: list = field(default_factory=list)  # patch files that apply cleanly
    applied: list = field(default_factory=list)     # patch files already applied
    problems: list = field(default_factory=list)    # "file: hunk N …" for the rest

    @property
    def status(self):
        if self.problems or (self.applicable and self.applied):
            return "drifted"
        return "applied" if self.applied else "applicable"


def _patch_program():
    program = shutil.which("patch")
    if program is None:
        raise PatchError("GNU patch not found on PATH: install it (e.g. `apt-get install patch`) and retry.")
    return program


def _run(checkout, patch_file, *flags):
    """GNU patch, never interactive (-f: no 'reversed patch?' guess), no fuzz, no backups."""
    return subprocess.run([_patch_program(), "-f", "-p1", "-F0", "--no-backup-if-mismatch", "-d", str(checkout),
                           "-i", str(patch_file), *flags], capture_output=True, text=True)


def _failures(patch_file, output):
    """'file: hunk N (upstream line L) does not apply' for each hunk GNU patch's dry run rejected."""
    starts = [int(m[1]) for m in re.finditer(r"^@@ -(\d+)", patch_file.read_text(encoding="utf-8"), re.M)]
    return [f"{_target(patch_file)}: hunk {n} (upstream line {starts[int(n) - 1]}) does not apply"
            for n in re.findall(r"^Hunk #(\d+) FAILED", output, re.M)]


def _target(patch_file):
    """The file a patch changes, from its '+++ b/<file>' header."""
    with open(patch_file, encoding="utf-8") as f:
        return next(line[len("+++ b/"):].strip() for line in f if line.startswith("+++ b/"))


def check(checkout):
    """The checkout's State, by dry runs only (nothing is written)."""
    checkout = Path(checkout)
    _patch_program()  # fail first, and plainly, without GNU patch
    if not checkout.is_dir():
        raise PatchError(f"{checkout}: no such folder (give the root of an upstream Uni-Sign checkout)")
    state = State()
    for patch_file in PATCHES:
        target = _target(patch_file)
        if not (checkout / target).is_file():
            state.problems.append(f"{target}: not found (is {checkout} the root of a Uni-Sign checkout?)")
            continue
        forward = _run(checkout, patch_file, "--dry-run")
        if forward.returncode == 0:
            state.applicable.append(patch_file)
        elif _run(checkout, patch_file, "--dry-run", "-R").returncode == 0:
            state.applied.append(patch_file)
        else:
            report = forward.stdout + forward.stderr
            state.problems += _failures(patch_file, report) or [f"{patch_file.name}: does not apply ({report.strip()})"]
    return state


def _refuse(checkout, state, action):
    lines = [f"{checkout} does not match upstream Uni-Sign {UPSTREAM_COMMIT} (nothing was changed, {action} refused):"]
    lines += [f"  {problem}" for problem in state.problems]
    if state.applicable and state.applied:
        lines.append("  partly patched: applied " + ", ".join(p.name for p in state.applied)
                     + "; not applied " + ", ".join(p.name for p in state.applicable))
    return PatchError("\n".join(lines))


def _change(checkout, action, done, ready, *patch_flags):
    """Run every patch (with patch_flags) when the checkout is `ready`; False when it is already `done`."""
    state = check(checkout)
    if state.status == done:
        return False
    if state.status != ready:
        raise _refuse(checkout, state, action)
    for patch_file in PATCHES:
        result = _run(checkout, patch_file, *patch_flags)
        if result.returncode != 0:  # cannot happen after a clean dry run; say so plainly if it does
            raise PatchError(f"{patch_file.name} failed after a clean dry run:\n{result.stdout}{result.stderr}")
    return True


def apply(checkout):
    """Apply every patch, or none; → 'applied' or 'already applied'."""
    return "applied" if _change(checkout, "apply", "applied", "applicable") else "already applied"


def revert(checkout):
    """Undo every patch, restoring the files byte for byte; → 'reverted' or 'not applied'."""
    return "reverted" if _change(checkout, "revert", "applicable", "applied", "-R") else "not applied"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser("python -m uni_sign_ext.patches", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "apply", "revert"])
    parser.add_argument("checkout", help="root of an upstream Uni-Sign checkout (commit 2c9028f)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            state = check(args.checkout)
            if state.status == "drifted":
                raise _refuse(args.checkout, state, "apply")
            print(f"{args.checkout}: patches {'already applied' if state.status == 'applied' else 'apply cleanly'}")
        else:
            print(f"{args.checkout}: {(apply if args.command == 'apply' else revert)(args.checkout)}")
    except PatchError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0

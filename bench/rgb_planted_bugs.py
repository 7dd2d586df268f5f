"""Plant the bugs the --rgb_support data tests guard against, one at a time, and check each one fails them.

    python bench/rgb_planted_bugs.py [--tests tests/test_rgb_data.py ...]

Each bug is a text substitution in a copy of the repo's files (tracked and untracked, not ignored) in a
temporary folder; the working tree is never touched. Prints one line per bug: caught (the tests failed) or
SURVIVED; exits 1 if any survived.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HC = "uni_sign_ext/hand_crops.py"
BUGS = {  # name → (file, original text, planted text)
    "left/right swapped": (HC, '"left": (slice(91, 112), [95, 99, 103, 107, 111]),\n    "right": (slice(112, 133), '
                               '[116, 120, 124, 128, 132]),',
                           '"left": (slice(112, 133), [116, 120, 124, 128, 132]),\n    "right": (slice(91, 112), '
                           '[95, 99, 103, 107, 111]),'),
    "RNG consumed for an absent hand": (HC, "    if len(confident) == 0:\n        return None",
                                        "    if len(confident) == 0:\n        rng.rand()\n        return None"),
    "ceil → floor (k)": (HC, "int(np.ceil(SAMPLE_SHARE", "int(np.floor(SAMPLE_SHARE"),
    "frame index off by one (+1)": (HC, "images = decode(np.asarray(frames)[positions])",
                                    "images = decode(np.asarray(frames)[positions] + 1)"),
    "frame index = position + start (sampling ignored)": (
        HC, "images = decode(np.asarray(frames)[positions])",
        "images = decode(positions + np.asarray(frames)[0])"),
    "box corners floored, not truncated": (HC, "size / 2]).astype(np.int16).T",
                                           "size / 2]).__floordiv__(1).astype(np.int16).T"),
    "mean score ≥ 0.3 instead of > 0.3": (HC, "mean(-1) > SCORE_THRESHOLD)", "mean(-1) >= SCORE_THRESHOLD - 0.05)"),
}


def repo_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", nargs="+", default=["tests/test_rgb_data.py"])
    args = parser.parse_args()
    survived = 0
    files = repo_files()
    for name, (path, original, planted) in BUGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            for f in files:
                (Path(tmp) / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, Path(tmp) / f)
            target = Path(tmp) / path
            text = target.read_text()
            assert text.count(original) == 1, f"{name}: the code to mutate is not there once"
            target.write_text(text.replace(original, planted))
            env = dict(os.environ, PYTHONPATH=tmp)
            started = time.time()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args.tests],
                                  cwd=tmp, env=env, capture_output=True, text=True)
            failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
            if proc.returncode == 0:
                survived += 1
                print(f"SURVIVED  {name}", flush=True)
            else:
                print(f"caught    {name} ({time.time() - started:.0f}s): {failed[0] if failed else proc.stdout[-200:]}",
                      flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())

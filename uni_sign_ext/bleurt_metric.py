"""BLEURT of How2Sign/OpenASL translations at `--eval`, as upstream reports it (following GloFE): the mean
of Google's `bleurt` scores over the split, from the checkpoint at `--bleurt_checkpoint`.

Neither the package (it needs TensorFlow) nor the checkpoint is a dependency: without them BLEURT is
skipped, and the run says so once, at start, with the reason and the fix, instead of failing after a long
evaluation. A scorer that fails while scoring is reported the same way and the other metrics stand.
"""
import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)
DATASETS = ("How2Sign", "OpenASL")
DEFAULT_CHECKPOINT = "./BLEURT-20"  # upstream's fixed path
INSTALL = "pip install git+https://github.com/google-research/bleurt.git"


def add_bleurt_args(parser):
    parser.add_argument("--bleurt_checkpoint", default=DEFAULT_CHECKPOINT,
                        help="BLEURT checkpoint folder for How2Sign/OpenASL --eval (default: %(default)s, as "
                             "upstream); BLEURT is skipped, with a note, when it or the bleurt package is missing")


def wanted(args):
    """Upstream scores BLEURT for translation on How2Sign and OpenASL, at --eval only (it is slow)."""
    return args.eval and args.task == "SLT" and args.dataset in DATASETS


def unavailable(checkpoint):
    """Why BLEURT cannot be scored here (with the fix), or None."""
    if importlib.util.find_spec("bleurt") is None:
        return f"the bleurt package is not installed ({INSTALL})"
    if not Path(checkpoint).is_dir():
        return (f"no BLEURT checkpoint folder at {checkpoint} (download and unzip BLEURT-20 there, or pass "
                "--bleurt_checkpoint)")
    return None


class Bleurt:
    """Scores splits with one scorer, loaded at the first split; `skipped` holds why it does not score."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.scorer = None
        self.skipped = unavailable(checkpoint)
        if self.skipped:
            logger.warning("BLEURT skipped: %s", self.skipped)

    def mean_score(self, references, candidates):
        """The mean BLEURT score of the pairs, or None when skipped."""
        if self.skipped:
            return None
        try:
            if self.scorer is None:
                from bleurt import score

                self.scorer = score.BleurtScorer(self.checkpoint)
            scores = self.scorer.score(references=references, candidates=candidates)
            return sum(scores) / len(scores)
        except Exception as exc:  # a third-party scorer (TensorFlow) fails in its own ways; the run goes on
            self.skipped = f"the scorer failed ({type(exc).__name__}: {exc})"
            logger.warning("BLEURT skipped: %s", self.skipped)
            return None

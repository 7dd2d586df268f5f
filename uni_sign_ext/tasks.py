"""What `--task` changes, as upstream Uni-Sign does it: the target text, the metrics, and which dev score
picks best_checkpoint.pth. The model, its prompt, the flags and the checkpoints are the same for every task.

- SLT: translate to the label's `text` (sentence); BLEU-1…4 and ROUGE-L, CSL-Daily per character; best = highest BLEU-4.
- ISLR (WLASL): the sign's word, the label's `text`; top-1 accuracy per instance and per class, by exact
  match of the generated text; best = highest per-instance accuracy.
- CSLR (CSL-Daily): the label's glosses joined by spaces, in training and evaluation; WER and its
  deletion/insertion/substitution rates; best = lowest WER.
"""
import math
from dataclasses import dataclass

from uni_sign_ext.metrics import evaluate_translations, islr_accuracy, wer


@dataclass(frozen=True)
class Task:
    best_key: str            # the dev metric that chooses best_checkpoint.pth
    higher_is_better: bool
    best_name: str           # how logs call it

    def improves(self, score, best):
        return score > best if self.higher_is_better else score < best

    @property
    def no_score_yet(self):
        """The best score before the first epoch: any score improves on it."""
        return -math.inf if self.higher_is_better else math.inf


TASKS = {"SLT": Task("bleu4", True, "BLEU-4"),
         "ISLR": Task("top1_acc_pi", True, "per-instance accuracy"),
         "CSLR": Task("wer", False, "WER")}


def use_task_targets(tgt_input, task):
    """CSLR learns and is scored on the glosses: they replace the sentences of the batch (as upstream)."""
    if task == "CSLR":
        tgt_input["gt_sentence"] = tgt_input["gt_gloss"]
    return tgt_input


def score(task, dataset, references, predictions):
    """The task's metrics of one split's predictions (decoded text)."""
    if task == "ISLR":
        return islr_accuracy(references, predictions)
    if task == "CSLR":
        return wer(references, predictions)
    return evaluate_translations(dataset, references, predictions)


def format_scores(task, metrics):
    """The metrics line of the logs."""
    if task == "ISLR":
        return f"top-1 per-instance {metrics['top1_acc_pi']:.2f} per-class {metrics['top1_acc_pc']:.2f}"
    if task == "CSLR":
        return (f"WER {metrics['wer']:.2f} (del {metrics['del_rate']:.2f} ins {metrics['ins_rate']:.2f} "
                f"sub {metrics['sub_rate']:.2f})")
    text = " ".join(f"BLEU-{n} {metrics[f'bleu{n}']:.2f}" for n in range(1, 5))
    return text + f" ROUGE-L {metrics['rouge']:.2f}"

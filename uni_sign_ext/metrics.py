"""Metrics as upstream Uni-Sign reports them, so our numbers compare with its papers: translation (SLT),
isolated (ISLR) and continuous (CSLR) recognition.

BLEU-1…4 come from sacrebleu (13a tokenizer) and ROUGE-L from the PyPI `rouge` package (1.0.1).
"""
import numpy as np
from rouge import Rouge
from sacrebleu.metrics import BLEU


def _rouge_scorable(text):
    """Whether `rouge` 1.0.1 can score this text: it splits at '.' and raises when no piece is left."""
    return any(text.split("."))


def translation_performance(references, hypotheses):
    """{'bleu1'…'bleu4', 'rouge'}, each × 100.

    bleuN is corpus BLEU over the first N n-gram orders: brevity penalty × geometric mean of the first
    N precisions (sacrebleu's default 'exp' smoothing, as in `sacrebleu.corpus_bleu`, so bleu4 is the
    usual BLEU score). rouge is the mean over pairs of ROUGE-L F. The `rouge` package raises on an
    empty hypothesis or reference (also on one made only of '.'): such a pair scores 0 and still
    counts in the mean, so a model that outputs nothing is penalised, never crashes the evaluation.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    scores = {f"bleu{n}": BLEU(max_ngram_order=n, tokenize="13a").corpus_score(hypotheses, [references]).score
              for n in range(1, 5)}
    scorer = Rouge(metrics=["rouge-l"])
    f_scores = [scorer.get_scores(h, r)[0]["rouge-l"]["f"] if _rouge_scorable(h) and _rouge_scorable(r) else 0.0
                for h, r in zip(hypotheses, references)]
    scores["rouge"] = 100 * sum(f_scores) / max(1, len(f_scores))
    return scores


def prepare_csl_daily(references, hypotheses):
    """CSL-Daily is scored per character, as upstream does: returns (references, hypotheses).

    Prediction: spaces and newlines removed, characters joined by one space. Reference: '，'→',' and
    '？'→'?', spaces removed, characters joined by one space.
    """
    hyps = [" ".join(h.replace(" ", "").replace("\n", "")) for h in hypotheses]
    refs = [" ".join(r.replace("，", ",").replace("？", "?").replace(" ", "")) for r in references]
    return refs, hyps


def evaluate_translations(dataset_name, references, hypotheses):
    """The metrics fine_tuning.py reports for a split, with CSL_Daily's character-level preparation."""
    if dataset_name == "CSL_Daily":
        references, hypotheses = prepare_csl_daily(references, hypotheses)
    return translation_performance(references, hypotheses)


def islr_accuracy(references, hypotheses):
    """{'top1_acc_pi', 'top1_acc_pc'}, each × 100: a prediction is right when it is the reference string.

    Per instance: share of right predictions. Per class: each reference word's share of right predictions,
    averaged over the words of the split (in first-seen order, with numpy's mean, as upstream sums them).
    """
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"{len(references)} references and {len(hypotheses)} hypotheses: need as many, at least one")
    right = [h == r for r, h in zip(references, hypotheses)]
    per_class = {}
    for reference, ok in zip(references, right):
        per_class.setdefault(reference, []).append(ok)
    # (share) × 100, in this order: 100 × share can differ in the last bit from upstream's numbers
    return {"top1_acc_pi": sum(right) / len(right) * 100,
            "top1_acc_pc": float(np.mean([sum(oks) / len(oks) for oks in per_class.values()])) * 100}


# Upstream's WER weighs a substitution 4, a deletion or an insertion 3: this choice of alignment (and
# its tie-breaking below) decides the sub/del/ins split and, at times, the error count, so unit-cost
# Levenshtein libraries (jiwer, editdistance) do not give its numbers.
WER_COST = {"sub": 4, "del": 3, "ins": 3}


def _edit_counts(reference, hypothesis):
    """{'sub', 'del', 'ins'} of the cheapest weighted alignment of two token lists.

    Ties are broken as upstream walks back from the end: a match, then a substitution, then an insertion,
    then a deletion. Costs are Python ints (upstream's uint8 table overflows past 255).
    """
    rows, cols = len(reference) + 1, len(hypothesis) + 1
    cost = [[0] * cols for _ in range(rows)]
    for j in range(cols):
        cost[0][j] = j * WER_COST["ins"]
    for i in range(1, rows):
        cost[i][0] = i * WER_COST["del"]
        for j in range(1, cols):
            if reference[i - 1] == hypothesis[j - 1]:
                cost[i][j] = cost[i - 1][j - 1]
            else:
                cost[i][j] = min(cost[i - 1][j - 1] + WER_COST["sub"], cost[i][j - 1] + WER_COST["ins"],
                                 cost[i - 1][j] + WER_COST["del"])
    counts = {"sub": 0, "del": 0, "ins": 0}
    i, j = rows - 1, cols - 1
    while i > 0 or j > 0:
        diagonal = i > 0 and j > 0
        if diagonal and reference[i - 1] == hypothesis[j - 1] and cost[i][j] == cost[i - 1][j - 1]:
            i, j = i - 1, j - 1
        elif diagonal and cost[i][j] == cost[i - 1][j - 1] + WER_COST["sub"]:
            counts["sub"] += 1
            i, j = i - 1, j - 1
        elif j > 0 and cost[i][j] == cost[i][j - 1] + WER_COST["ins"]:
            counts["ins"] += 1
            j -= 1
        else:
            counts["del"] += 1
            i -= 1
    return counts


def wer(references, hypotheses):
    """{'wer', 'del_rate', 'ins_rate', 'sub_rate'}, each × 100 of the reference tokens (space-split glosses),
    summed over the corpus before dividing."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    totals, reference_tokens = {"sub": 0, "del": 0, "ins": 0}, 0
    for reference, hypothesis in zip(references, hypotheses):
        reference = reference.split()
        for kind, count in _edit_counts(reference, hypothesis.split()).items():
            totals[kind] += count
        reference_tokens += len(reference)
    if not reference_tokens:
        raise ValueError("the references hold no gloss: WER is undefined")
    rates = {f"{kind}_rate": count / reference_tokens * 100 for kind, count in totals.items()}
    return {"wer": sum(totals.values()) / reference_tokens * 100, **rates}

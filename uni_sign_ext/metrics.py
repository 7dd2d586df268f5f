"""Translation metrics as upstream Uni-Sign reports them, so our numbers compare with its papers.

BLEU-1…4 come from sacrebleu (13a tokenizer) and ROUGE-L from the PyPI `rouge` package (1.0.1).
"""
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

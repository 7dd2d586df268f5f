"""Translation metrics as upstream reports them: BLEU-1…4 (sacrebleu, 13a) and ROUGE-L (PyPI `rouge`)."""
from rouge import Rouge
from sacrebleu.metrics import BLEU


def translation_performance(references, hypotheses):
    """{'bleu1'…'bleu4', 'rouge'}, each × 100.

    bleuN is corpus BLEU over the first N n-gram orders (brevity penalty × their geometric mean);
    bleu4 is sacrebleu's usual score. rouge is the mean ROUGE-L F over pairs; the `rouge` package
    cannot score an empty hypothesis or reference, so such a pair scores 0.
    """
    scores = {f"bleu{n}": BLEU(max_ngram_order=n, tokenize="13a").corpus_score(hypotheses, [references]).score
              for n in range(1, 5)}
    scorer = Rouge()
    f_scores = [scorer.get_scores(h, r)[0]["rouge-l"]["f"] if h.strip() and r.strip() else 0.0
                for h, r in zip(hypotheses, references)]
    scores["rouge"] = 100 * sum(f_scores) / max(1, len(f_scores))
    return scores


def prepare_csl_daily(references, hypotheses):
    """Character-level CSL-Daily scoring: one space between characters, Chinese punctuation mapped."""
    hyps = [" ".join(h.replace(" ", "").replace("\n", "")) for h in hypotheses]
    refs = [" ".join(r.replace("，", ",").replace("？", "?").replace(" ", "")) for r in references]
    return refs, hyps


def evaluate_translations(dataset, references, hypotheses):
    if dataset == "CSL_Daily":
        references, hypotheses = prepare_csl_daily(references, hypotheses)
    return translation_performance(references, hypotheses)

"""Metrics against values worked out by hand, and against sacrebleu's usual BLEU."""
import math

import pytest
import sacrebleu

from uni_sign_ext.metrics import evaluate_translations, prepare_csl_daily, translation_performance


def test_identical_hypotheses_score_100():
    refs = ["the cat sat on the mat", "a dog runs in the park today"]
    scores = translation_performance(refs, list(refs))
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge"}
    for value in scores.values():
        assert value == pytest.approx(100, abs=1e-4)


def test_bleu1_bleu2_by_hand():
    # ref 6 tokens, hyp 5 tokens. 1-grams: the×2, cat, on, mat all match → 5/5.
    # 2-grams: "the cat", "cat on", "on the", "the mat" → 3 of 4 in the reference.
    # brevity penalty exp(1 − 6/5).
    scores = translation_performance(["the cat sat on the mat"], ["the cat on the mat"])
    bp = math.exp(1 - 6 / 5)
    assert scores["bleu1"] == pytest.approx(100 * bp * 1.0)
    assert scores["bleu2"] == pytest.approx(100 * bp * math.sqrt(1.0 * 3 / 4))
    # 3-grams: only "on the mat" of 3 → bleu3 is the geometric mean of three precisions.
    assert scores["bleu3"] == pytest.approx(100 * bp * (1.0 * 3 / 4 * 1 / 3) ** (1 / 3))


def test_bleu_is_corpus_level():
    # Counts are summed over the corpus before dividing: 1-gram matches (2 + 1) / (2 + 2), no brevity penalty.
    scores = translation_performance(["a b", "c d"], ["a b", "c e"])
    assert scores["bleu1"] == pytest.approx(100 * 3 / 4)


def test_bleu4_is_sacrebleus_usual_score():
    refs = ["the cat sat on the mat", "he read the book because he was interested in world history",
            "it is a guide to action which ensures that the military always obeys the commands",
            "short one"]
    hyps = ["the cat is on the mat", "he was interested in world history because he read the book",
            "it is a guide to action that ensures that the military will forever heed party commands",
            "completely different"]
    assert translation_performance(refs, hyps)["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)


def test_rouge_l_by_hand():
    # LCS("a b c d", "a c b d e") = 3 ("a b d"): P = 3/4, R = 3/5, F = 2PR/(P+R) = 2/3.
    assert translation_performance(["a c b d e"], ["a b c d"])["rouge"] == pytest.approx(100 * 2 / 3, abs=1e-5)
    # Mean over pairs: a perfect pair and the pair above.
    scores = translation_performance(["x y", "a c b d e"], ["x y", "a b c d"])
    assert scores["rouge"] == pytest.approx(100 * (1 + 2 / 3) / 2, abs=1e-5)


def test_empty_texts_score_zero_and_do_not_crash():
    scores = translation_performance(["a b c", "x y", "p q"], ["a b c", "", "..."])
    assert scores["rouge"] == pytest.approx(100 / 3, abs=1e-5)   # the two unscorable pairs count as 0
    assert 0 <= scores["bleu4"] <= 100
    all_empty = translation_performance(["a b", "c d"], ["", ""])
    assert all_empty == {"bleu1": 0.0, "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0, "rouge": 0.0}
    assert translation_performance([""], ["a b"])["rouge"] == 0.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        translation_performance(["a", "b"], ["a"])


def test_csl_daily_preparation():
    refs, hyps = prepare_csl_daily(["你好，今天 星期几？"], ["你 好,今天\n星期几?"])
    assert refs == ["你 好 , 今 天 星 期 几 ?"]
    assert hyps == ["你 好 , 今 天 星 期 几 ?"]
    # The reference's Chinese punctuation is mapped; the prediction's is left alone.
    refs, hyps = prepare_csl_daily(["好？"], ["好？"])
    assert refs == ["好 ?"] and hyps == ["好 ？"]


def test_evaluate_translations_prepares_csl_daily_only():
    csl = evaluate_translations("CSL_Daily", ["今天星期几？"], ["今天 星期几?"])
    assert csl["bleu4"] == pytest.approx(100)
    # Without the character-level preparation the same strings are one or two "words" and do not match.
    other = evaluate_translations("How2Sign", ["今天星期几？"], ["今天 星期几?"])
    assert other["bleu4"] < 100
    same = "how are you today"
    assert evaluate_translations("How2Sign", [same], [same])["bleu4"] == pytest.approx(100)


def test_tokenizer_is_13a_not_none():
    # 13a splits punctuation off words, so these two are the same sentence; without it they share no token.
    refs, hyps = ["hello, world!"], ["hello , world !"]
    scores = translation_performance(refs, hyps)
    assert scores["bleu1"] == pytest.approx(100) and scores["bleu4"] == pytest.approx(100)
    untokenized = sacrebleu.BLEU(max_ngram_order=1, tokenize="none").corpus_score(hyps, [refs]).score
    assert untokenized < 1


def test_smoothing_is_exp_not_floor():
    # 5 tokens each, no brevity penalty. Matches: 1-grams 4/5, 2-grams 2/4 (a b, b c), 3-grams 1/3, 4-grams 0/2.
    # 'exp' smoothing replaces the first zero precision by 1 / (2 · total) = 1/4; 'floor' would use 0.1/2.
    refs, hyps = ["a b c x e"], ["a b c d e"]
    bleu4 = translation_performance(refs, hyps)["bleu4"]
    assert bleu4 == pytest.approx(100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** (1 / 4))
    floor = sacrebleu.BLEU(smooth_method="floor", smooth_value=0.1).corpus_score(hyps, [refs]).score
    assert floor == pytest.approx(100 * (4 / 5 * 2 / 4 * 1 / 3 * 0.05) ** (1 / 4))
    assert abs(bleu4 - floor) > 5

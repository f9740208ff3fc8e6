"""ROUGE (rouge-score) and BLEU / chrF (sacrebleu), checked against the libraries' documented
examples and hand counts."""

from __future__ import annotations

import pytest

pytest.importorskip("rouge_score")
pytest.importorskip("sacrebleu")

from eval.metrics.base import Sample  # noqa: E402
from eval.metrics.rouge import RougeMetric  # noqa: E402
from eval.metrics.sacrebleu import BleuMetric, ChrfMetric  # noqa: E402

TARGET = "The quick brown fox jumps over the lazy dog"
PREDICTION = "The quick brown dog jumps on the log."


def test_rouge_on_the_rouge_score_readme_example() -> None:
    # rouge-score's README scores this pair. By hand: 6 shared unigrams (the x2, quick, brown,
    # dog, jumps) of 8 predicted and 9 target tokens; LCS "the quick brown jumps the" = 5.
    s = Sample("q", PREDICTION, answers=(TARGET,))
    p1, r1 = 6 / 8, 6 / 9
    pl, rl = 5 / 8, 5 / 9
    assert RougeMetric("rouge1").score(s).value == pytest.approx(2 * p1 * r1 / (p1 + r1))
    assert RougeMetric("rougeL").score(s).value == pytest.approx(2 * pl * rl / (pl + rl))


def test_rouge_takes_the_best_reference_and_rejects_unknown_variants() -> None:
    s = Sample("q", "forty thousand euros", answers=("ninety dollars", "forty thousand euros"))
    assert RougeMetric("rouge2").score(s).value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown ROUGE variant"):
        RougeMetric("rouge9")


def test_sacrebleu_readme_corpus_example_matches_the_library() -> None:
    # sacrebleu's README: BLEU = 48.53, chrF2 = 59.73 on this corpus. Our metrics are per
    # sentence; this pins the library version and settings the per-sentence scores use.
    import sacrebleu

    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    assert sacrebleu.corpus_bleu(hyps, refs).score == pytest.approx(48.53, abs=0.01)
    assert sacrebleu.corpus_chrf(hyps, refs).score == pytest.approx(59.73, abs=0.01)
    # sentence 1 matches its first reference exactly: BLEU and chrF are 1 after scaling
    s = Sample("q", hyps[0], answers=(refs[0][0], refs[1][0]))
    assert BleuMetric().score(s).value == pytest.approx(1.0)
    assert ChrfMetric().score(s).value == pytest.approx(1.0)


def test_sentence_bleu_is_sacrebleus_divided_by_100() -> None:
    import sacrebleu

    hyp, refs = "The man had just bitten him.", ["The man bit him first.",
                                                  "The man had bitten the dog."]
    expected = sacrebleu.sentence_bleu(hyp, refs, smooth_method="exp").score / 100
    got = BleuMetric().score(Sample("q", hyp, answers=tuple(refs))).value
    assert 0 < got < 1
    assert got == pytest.approx(expected, abs=1e-6)
    assert ChrfMetric().score(Sample("q", "", answers=("x",))).value == 0.0

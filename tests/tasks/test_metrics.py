"""Task metrics (eval.tasks) against the libraries' own documented examples."""

from __future__ import annotations

import pytest

from eval.tasks import entity_counts, score_task, task_metric_names


def test_bleu_and_chrf_match_the_sacrebleu_readme():
    # sacrebleu README: BLEU = 48.53 ... chrF2 = 59.73 for this system and two reference streams.
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    per_example = [list(r) for r in zip(*refs)]
    scores = score_task("translate", hyps, per_example)
    assert scores == {"bleu": 0.4853, "chrf": 0.5973}


def test_rouge_matches_the_rouge_score_readme():
    # rouge-score README's example pair (use_stemmer=True). rouge1: 6 shared unigrams, P 6/8,
    # R 6/9; rougeL: the LCS "the quick brown jumps the" (5), P 5/8, R 5/9.
    scores = score_task("summarize", ["The quick brown dog jumps on the log."],
                        ["The quick brown fox jumps over the lazy dog"])
    assert scores["rouge1"] == pytest.approx(0.7059, abs=1e-4)
    assert scores["rougeL"] == pytest.approx(0.5882, abs=1e-4)
    assert 0 < scores["rouge2"] < scores["rouge1"]


def test_accuracy_and_macro_f1_match_the_scikit_learn_docs():
    # scikit-learn docs: f1_score(average='macro') == 0.26... and accuracy_score == 0.5.
    assert score_task("classify", [0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2])["macro_f1"] == 0.2667
    assert score_task("classify", [0, 2, 1, 3], [0, 1, 2, 3])["accuracy"] == 0.5


def test_unparsed_classify_output_counts_as_wrong():
    assert score_task("classify", [None, "a"], ["a", "a"])["accuracy"] == 0.5


def test_entity_level_precision_recall_f1():
    pred = [{"entities": [{"text": "Ada Lovelace", "type": "PERSON"},
                          {"text": "London", "type": "ORGANIZATION"}]},
            None]
    ref = [{"entities": [{"text": "ada  lovelace", "type": "person"},
                         {"text": "London", "type": "LOCATION"}]},
           [{"text": "Paris", "type": "LOCATION"}]]
    assert entity_counts(pred, ref) == (1, 2, 3)
    scores = score_task("extract", pred, ref)
    assert scores["entity_precision"] == 0.5
    assert scores["entity_recall"] == 0.3333
    assert scores["entity_f1"] == 0.4
    assert scores["parse_rate"] == 0.5


def test_code_pass_rate_and_judge_metrics_left_to_appkit_eval():
    runs = [{"passed": True}, {"passed": False}]
    assert score_task("code", runs, ["", ""]) == {"tests_pass": 0.5}
    assert score_task("write", ["x"], ["y"]) == {}


def test_every_registry_metric_is_resolved_or_judged():
    from appkit.tasks import get_task, task_names

    judged = {"rubric", "faithfulness", "exact_match", "token_f1"}  # appkit eval's metrics
    for task in task_names():
        for name in get_task(task).metrics:
            assert name in task_metric_names() or name in judged, (task, name)


def test_unknown_metric_is_an_error():
    from appkit.errors import AppkitError

    with pytest.raises(AppkitError, match="unknown task metric 'bleurt'"):
        score_task("translate", ["a"], ["a"], metrics=["bleurt"])

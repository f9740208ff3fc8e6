"""Synthetic test sets from ingested chunks, with a fake chat model writing the candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("rapidfuzz")

from appkit.app import App  # noqa: E402
from appkit.config import Profile  # noqa: E402
from appkit.errors import AppkitError  # noqa: E402
from appkit.testing import FakeChatModel, HashingEmbeddings  # noqa: E402
from eval.generate import generate_testset, parse_candidate, reject_reason  # noqa: E402
from eval.metrics.citations import supports  # noqa: E402

CHUNK = "The beta budget is forty thousand euros for the third quarter, approved in June."


def reply(q: str, a: str) -> str:
    return json.dumps({"question": q, "answer": a})


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (None, "not valid JSON with a question and an answer"),
        ({"question": "Budget", "answer": "40k"}, "not a well-formed question"),
        ({"question": "What is the beta budget?", "answer": ""}, "answer empty or too long"),
        ({"question": "What is the beta budget?", "answer": "Not mentioned in the text"},
         "answer is a refusal"),
        ({"question": "What is the beta budget?", "answer": "ninety dollars"},
         "answer not found in the chunk"),
        ({"question": "Is the budget forty thousand euros?", "answer": "forty thousand euros"},
         "question gives the answer away"),
        ({"question": "What is the beta budget for the third quarter?",
          "answer": "forty thousand euros"}, "near-duplicate question"),
        ({"question": "When was the beta budget approved?", "answer": "in June"}, None),
    ],
)
def test_quality_filters(candidate: dict | None, reason: str | None) -> None:
    kept = ["What's the beta budget for the third quarter?"]
    assert reject_reason(candidate, CHUNK, kept) == reason


def test_parse_candidate_finds_the_json_object() -> None:
    assert parse_candidate('```json\n{"question": "Q?", "answer": 42}\n```') == {
        "question": "Q?", "answer": "42"}
    assert parse_candidate("no json here") is None
    assert parse_candidate('{"question": ["list"], "answer": "a"}') is None


class QuizModel(FakeChatModel):
    """Writes a grounded question about the passage it is shown; every third reply is garbage."""

    def _next(self, messages):  # noqa: ANN001, ANN202
        self.calls.append(list(messages))
        if len(self.calls) % 3 == 0:
            return "Sure, here is a question!"
        passage = messages[-1].text.split("Passage:\n", 1)[1].split("\n\nWrite", 1)[0]
        words = passage.replace(".", " ").split()
        return reply(f"Which words end the text that starts with {' '.join(words[:3])}?",
                     " ".join(words[-3:]))


def test_generate_keeps_good_candidates_and_counts_rejections(
        profile: Profile, embeddings: HashingEmbeddings, docs_dir: Path) -> None:
    app = App(profile, embeddings=embeddings, chat_model=QuizModel())
    app.ingest([docs_dir])
    cases, report = generate_testset(app, 3, seed=1, min_chars=40, progress=False)
    assert report.kept == len(cases) >= 1
    assert report.tried == report.kept + sum(report.rejected.values())
    assert report.rejected["not valid JSON with a question and an answer"] >= 1
    chunk_ids = {d.id for d in app.store.get()}
    for case in cases:
        assert supports(case.reference_contexts[0], case.reference)  # grounded
        assert case.relevant_ids[0] in chunk_ids
        assert case.metadata["generated_by"] == "QuizModel"
    questions = [c.question for c in cases]
    assert len(set(questions)) == len(questions)


def test_generate_needs_ingested_chunks(profile: Profile, embeddings: HashingEmbeddings) -> None:
    app = App(profile, embeddings=embeddings, chat_model=FakeChatModel())
    with pytest.raises(AppkitError, match="run 'appkit ingest' first"):
        generate_testset(app, 2, progress=False)

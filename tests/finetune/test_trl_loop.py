"""The shared trl loop: which checkpoint a resume starts from, which runs may be resumed."""

from __future__ import annotations

import pytest

from appkit.errors import AppkitError
from finetune.runs import Run
from finetune.trl_loop import checkpoint_step, latest_checkpoint, resumable_run


def test_latest_checkpoint_is_the_newest_complete_one(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for n in (2, 10, 12):
        (tmp_path / f"checkpoint-{n}").mkdir()
    for n in (2, 10):
        (tmp_path / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    found = latest_checkpoint(tmp_path)  # 10 > 2 by number; 12 was cut short
    assert found == tmp_path / "checkpoint-10" and checkpoint_step(found) == 10


def test_only_unfinished_runs_of_the_kind_resume(tmp_path):
    Run.create("sft", {"method": "lora"}, root=tmp_path)
    cut = Run.create("cut", {"method": "lora", "dpo": {}}, root=tmp_path)
    cut.update(status="interrupted")
    assert resumable_run(cut, "DPO", "dpo") is cut
    with pytest.raises(AppkitError, match="'sft' is not a DPO run"):
        resumable_run(Run(tmp_path / "sft"), "DPO", "dpo")
    with pytest.raises(AppkitError, match="not an RL run"):
        resumable_run(cut, "RL", "rl")
    cut.update(status="finished")
    with pytest.raises(AppkitError, match="already finished"):
        resumable_run(cut, "DPO", "dpo")

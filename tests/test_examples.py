"""The shipped examples stay valid: every profile loads, and the corpus is what the tests assume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appkit.config import Profile, load_profile
from appkit.ingest.loaders import loader_for
from tests.helpers import EXAMPLE_DOCS, EXAMPLES

PROFILES = sorted(EXAMPLES.rglob("*.toml"))
DOCS = sorted(p for p in EXAMPLE_DOCS.rglob("*") if p.is_file())

# One fact per file, so a citation can be checked against the file that holds it.
FACTS = {
    "meetings/2024-06-12-budget-review.md": "EUR 48,000",
    "onboarding.html": "fernhill-visitors",
    "travel-policy.pdf": "EUR 135 per night",
    "product-roadmap.docx": "14 November 2024",
    "support-faq.txt": "+49 30 5550 1234",
    "offices.csv": "Rua da Prata 150",
}


def text_of(path: Path) -> str:
    return "\n".join(d.page_content for d in loader_for(path).load(path))


def test_there_are_example_profiles() -> None:
    assert {p.name for p in PROFILES} >= {"default.toml", "few-shot.toml", "gemma-completion.toml"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_profile_loads_and_round_trips(path: Path) -> None:
    profile = load_profile(path)
    assert Profile.from_dict(profile.to_dict()) == profile
    for folder in profile.documents.paths:
        assert profile.resolve(folder).is_dir(), f"{path}: documents.paths names {folder}"


def test_the_corpus_is_small_and_every_file_loads() -> None:
    assert sum(p.stat().st_size for p in DOCS) < 50_000
    assert {str(p.relative_to(EXAMPLE_DOCS)) for p in DOCS} == set(FACTS)


@pytest.mark.parametrize("name", sorted(FACTS))
def test_each_fact_lives_in_exactly_one_file(name: str) -> None:
    holders = [str(p.relative_to(EXAMPLE_DOCS)) for p in DOCS if FACTS[name] in text_of(p)]
    assert holders == [name]


def test_the_generated_fixtures_can_be_rebuilt(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "make_fixtures.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pdf = tmp_path / "travel-policy.pdf"
    assert pdf.read_bytes() == (EXAMPLE_DOCS / "travel-policy.pdf").read_bytes()
    [_, page2] = loader_for(pdf).load(pdf)
    assert page2.metadata["page"] == 2 and FACTS["travel-policy.pdf"] in page2.page_content
    docx = tmp_path / "product-roadmap.docx"
    assert text_of(docx) == text_of(EXAMPLE_DOCS / "product-roadmap.docx")

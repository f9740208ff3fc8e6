"""Fixtures for the Streamlit app's tests: a profile on disk, the fake models, a fresh cache.

Page tests drive ``ui/main.py`` with ``streamlit.testing.v1.AppTest`` in-process; the models are the
fakes of :mod:`ui.testing` (``APPKIT_UI_APP_FACTORY``), so a page runs in well under a second and
nothing touches the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

st = pytest.importorskip("streamlit", reason="the app needs: pip install 'appkit[ui]'")

from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "ui" / "main.py"
PAGES = {"chat": "views/chat.py", "documents": "views/documents.py",
         "settings": "views/settings.py", "feedback": "views/feedback.py",
         "quality": "views/quality.py", "source": "views/source.py", "tasks": "views/tasks.py"}

HANDBOOK = """# Handbook

## Travel

Hotel bookings above 150 euros per night are approved by Maria Lopez in finance.

## Equipment

Laptops are replaced every three years by the IT desk.
"""


@pytest.fixture
def ui_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``appkit.toml`` in the test folder (small chunks, no relevance floor), used by the app."""
    path = tmp_path / "appkit.toml"
    path.write_text('[retrieval]\nchunk_size = 300\nchunk_overlap = 30\nmin_relevance = 0.0\n\n'
                    '[store]\npath = "data"\n', encoding="utf-8")
    monkeypatch.setenv("APPKIT_PROFILE", str(path))
    monkeypatch.setenv("APPKIT_UI_APP_FACTORY", "ui.testing:fake_app")
    monkeypatch.setenv("APPKIT_UI_WARM_UP", "0")
    return path


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.md").write_text(HANDBOOK, encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def open_page(ui_profile: Path) -> Callable[..., AppTest]:
    """Run the app and switch to a page: ``open_page("documents")``."""

    def open_(name: str = "chat", **query: str) -> AppTest:
        at = AppTest.from_file(str(MAIN), default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        if name != "chat":
            at.switch_page(PAGES[name]).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_


@pytest.fixture
def ingested(ui_profile: Path, handbook: Path) -> Path:
    """The handbook ingested into the test profile's collection with the fake embedder."""
    from appkit.config import load_profile
    from ui.testing import fake_app

    fake_app(load_profile(ui_profile)).ingest([handbook])
    return handbook


def by_label(widgets, label: str):
    """The widget with ``label`` (AppTest finds widgets by key or position otherwise)."""
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r}; have {[w.label for w in widgets]}"
    return found[0]


def texts(at: AppTest) -> str:
    """Every markdown, caption and notice on the page, as one string to search."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in (at.info, at.success, at.warning, at.error, at.title, at.subheader):
        parts += [str(e.value) for e in kind]
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item, so fixtures can see whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

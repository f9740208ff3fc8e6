"""``appkit serve``: an OpenAI-compatible server over the profile's documents and models.

See :mod:`appkit.server.app` for the endpoints and ``docs/deployment.md`` for running it on more
than one machine.

Example:
    >>> from appkit.config import Profile
    >>> from appkit.server import create_app
    >>> from appkit.testing import FakeChatModel, HashingEmbeddings
    >>> app = create_app(Profile(), embeddings=HashingEmbeddings(), chat_model=FakeChatModel())
    >>> sorted(r.path for r in app.routes)[:3]
    ['/health', '/ingest', '/search']
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `appkit --help` (which imports appkit.server.cli) never imports FastAPI.
    if name == "create_app":
        from appkit.server.app import create_app

        return create_app
    raise AttributeError(name)

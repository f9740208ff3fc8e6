"""A uvicorn factory for multi-process tests: the real server with fake models.

``python -m uvicorn --factory tests.server.fake_app:app --workers 2`` with ``$APPKIT_PROFILE`` set;
worker processes cannot be handed Python objects, so the fakes are built here.
"""

from __future__ import annotations

import os

from appkit.config import load_profile
from appkit.server.app import create_app
from appkit.testing import FakeChatModel, HashingEmbeddings


def app():
    profile = load_profile(os.environ["APPKIT_PROFILE"])
    return create_app(profile, embeddings=HashingEmbeddings(),
                      chat_model=FakeChatModel(default="From the documents [1]."))

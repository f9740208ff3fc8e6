"""Fakes and contract tests shipped with appkit, for its own tests and for plugins'.

Example:
    >>> from appkit.testing import FakeChatModel, HashingEmbeddings
    >>> FakeChatModel(replies=["hi"]).invoke("x").content
    'hi'
"""

from appkit.testing.fakes import FakeChatModel, HashingEmbeddings

__all__ = ["FakeChatModel", "HashingEmbeddings"]

"""Fakes and contract tests shipped with appkit, for its own tests and for plugins'.

Example:
    >>> from appkit.testing import FakeChatModel, HashingEmbeddings
    >>> FakeChatModel(replies=["hi"]).invoke("x").content
    'hi'
"""

from appkit.testing.fakes import FakeChatModel, FakeRewardModel, HashingEmbeddings

__all__ = ["FakeChatModel", "FakeRewardModel", "HashingEmbeddings"]

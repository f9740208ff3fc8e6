"""The generation settings every local chat model takes, as pydantic fields.

They mirror the profile's ``[chat.generation]`` table (:class:`appkit.config.GenerationConfig`), so
``make_chat_model`` passes the same keywords to every backend.

Example:
    >>> from appkit.models.generation import GenerationFields
    >>> GenerationFields(max_tokens=32).temperature
    0.1
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class GenerationFields(BaseModel):
    """Sampling settings shared by the local chat models (mixed in before ``BaseChatModel``).

    Example:
        >>> from appkit.models.generation import GenerationFields
        >>> GenerationFields(stop=["\\n\\n"]).stop
        ['\\n\\n']
    """

    max_tokens: int = 256
    temperature: float = 0.1
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    stop: list[str] = Field(default_factory=list)
    seed: int = 0

"""Request bodies of the server's endpoints (OpenAI's shapes for the ``/v1`` ones).

Fields OpenAI clients may send that appkit does not use (``n`` = 1, ``user``, ``logprobs`` …) are
accepted and ignored, so the official client works unchanged; values that appkit would have to get
wrong are refused with a 400 that names the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChatMessage(BaseModel):
    """One message; ``content`` may be a string or OpenAI's list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    tool_choice: str | dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return stops

    def overrides(self) -> dict[str, Any]:
        """Generation settings the request changes."""
        out: dict[str, Any] = {}
        if self.max_completion_tokens or self.max_tokens:
            out["max_tokens"] = self.max_completion_tokens or self.max_tokens
        for name in ("temperature", "top_p", "seed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.stop:
            out["stop"] = list(self.stop)
        return out


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] = Field(description="a text or a list of texts (token ids are not read)")
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _inputs(cls, v: str | list[str]) -> list[str]:
        texts = [v] if isinstance(v, str) else v
        if not texts:
            raise ValueError("input is empty")
        if len(texts) > 2048:
            raise ValueError("at most 2048 texts per request")
        return texts


class UploadedFile(BaseModel):
    """A document sent to ``/ingest``: text in ``content``, or any file in ``content_base64``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    content: str | None = None
    content_base64: str | None = None


class IngestRequest(BaseModel):
    """``POST /ingest``: add or replace files in the caller's collection, or delete them."""

    model_config = ConfigDict(extra="forbid")

    files: list[UploadedFile] = Field(default_factory=list, max_length=1000)
    delete: list[str] = Field(default_factory=list, max_length=1000)


class SearchRequest(BaseModel):
    """``POST /search``: the caller's chunks nearest to a query."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(default=None, ge=1, le=50)


class TaskRequest(BaseModel):
    """``POST /v1/tasks/{task}``: run one task (``appkit run``) on a text.

    ``model`` names a model of ``GET /v1/models`` (default: the profile's); the other fields
    override the profile's ``[tasks]`` table for this request.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    input: str = Field(min_length=1, description="the document, brief or question")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    labels: list[str] | None = Field(default=None, max_length=200)
    source_lang: str | None = Field(default=None, max_length=10)
    target_lang: str | None = Field(default=None, max_length=10)
    shots: Literal["zero-shot", "one-shot", "few-shot"] | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    tests: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)

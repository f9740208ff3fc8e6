"""The langchain-tests standard suites against ``LlamaCppChatModel`` with SmolLM2-135M."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from appkit.models.llama_cpp import LlamaCppChatModel


class TestLlamaCppChatModelUnit(ChatModelUnitTests):
    """Construction and metadata only: no model file is read."""

    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model_path": "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "model_name": "smollm2-135m"}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False


@pytest.mark.slow
class TestLlamaCppChatModelIntegration(ChatModelIntegrationTests):
    """Real generation with the packaged SmolLM2-135M (loaded once, shared by every test)."""

    @pytest.fixture(autouse=True)
    def _model_file(self, smollm_path: str) -> None:
        self._path = smollm_path

    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model_path": self._path, "model_name": "smollm2-135m", "n_ctx": 2048,
                "n_threads": 1, "max_tokens": 48, "seed": 1}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

"""`ModelRouter`: picks the adapter that serves a model name."""

from __future__ import annotations

from threadline.domain.errors import InvalidInput
from threadline.ports import ChatModel
from threadline.settings import ECHO_MODEL


class ModelRouter:
    def __init__(self, *, echo: ChatModel, remote: ChatModel | None) -> None:
        self._echo = echo
        self._remote = remote

    def resolve(self, model: str) -> ChatModel:
        if model == ECHO_MODEL:
            return self._echo
        if self._remote is None:
            raise InvalidInput(
                f"Model {model!r} needs an OpenAI-compatible endpoint: "
                f"set OPENAI_BASE_URL or OPENAI_API_KEY, or use {ECHO_MODEL!r}."
            )
        return self._remote

"""Thread titles: written in the background after the first reply, by a short capped model call."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from uuid import UUID

from threadline.domain.errors import ThreadlineError
from threadline.domain.models import PromptMessage, Role, Usage
from threadline.ports import (
    ChatModels,
    ModelError,
    ModelRequest,
    TitleSource,
    TitleStore,
    TitleUsage,
    TokenCounter,
)
from threadline.service.context import prompt_tokens
from threadline.settings import ECHO_MODEL

log = logging.getLogger("threadline.titles")

MAX_TITLE_CHARS = 80
MAX_TITLE_WORDS = 8
MAX_TITLE_TOKENS = 24
# Only the start of a long first message is worth sending for a title.
MAX_PROMPT_CHARS = 2_000
USE_AGENT_MODEL = "agent"
INSTRUCTIONS = (
    "Write a title of at most six words for a conversation that begins with the user's message. "
    "Answer with the title alone: no quotes, no trailing punctuation."
)
_SPACES = re.compile(r"\s+")
_PREFIX = re.compile(r"^(title\s*:\s*)", re.IGNORECASE)
_EDGES = "\"'`*#“”‘’«» "


def trimmed_title(text: str) -> str:
    """The first words of `text` on one line: what a title is without a model."""
    words = _SPACES.sub(" ", text).strip().split(" ")
    title = " ".join(words[:MAX_TITLE_WORDS])
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    elif len(words) > MAX_TITLE_WORDS:
        title += "…"
    return title


def clean_title(raw: str) -> str:
    """A model's answer as a title: its first line, without quotes, a `Title:` label or a final stop."""
    line = next((part for part in raw.strip().splitlines() if part.strip()), "")
    line = _PREFIX.sub("", line.strip()).strip(_EDGES).rstrip(".!?:;,").strip(_EDGES)
    line = _SPACES.sub(" ", line)
    if len(line) > MAX_TITLE_CHARS:
        line = line[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return line


class TitleWriter:
    def __init__(
        self,
        *,
        store: TitleStore,
        models: ChatModels,
        counter: TokenCounter,
        title_model: str | None,
        default_model: str,
        timeout_s: float = 20.0,
    ) -> None:
        self._store = store
        self._models = models
        self._counter = counter
        self._title_model = title_model
        self._default_model = default_model
        self._timeout_s = timeout_s

    def model_for(self, source: TitleSource) -> str | None:
        """The model that writes this title, or None when it is the trimmed first message."""
        if self._title_model is None:
            return None
        name = (
            source.agent_model or self._default_model
            if self._title_model == USE_AGENT_MODEL
            else self._title_model
        )
        return None if name == ECHO_MODEL else name

    async def write(self, thread_id: UUID) -> str | None:
        """Title an untitled thread; None if it has a title already (a user's edit wins)."""
        source = await self._store.title_source(thread_id)
        if source is None:
            return None
        title, usage = trimmed_title(source.first_message), None
        model_name = self.model_for(source)
        if model_name is not None:
            written, usage = await self._ask(model_name, source.first_message)
            title = clean_title(written) or title
        if not title:
            return None
        saved = await self._store.save_title(source, title, usage)
        return title if saved else None

    async def _ask(self, model_name: str, first_message: str) -> tuple[str, TitleUsage | None]:
        prompt = [
            PromptMessage(Role.SYSTEM, INSTRUCTIONS),
            PromptMessage(Role.USER, first_message[:MAX_PROMPT_CHARS]),
        ]
        request = ModelRequest(
            model=model_name, messages=prompt, temperature=0.2, max_output_tokens=MAX_TITLE_TOKENS
        )
        parts: list[str] = []
        reported: Usage | None = None
        provider = "unknown"
        started = time.monotonic()
        try:
            model = self._models.resolve(model_name)
            provider = model.provider
            async with asyncio.timeout(self._timeout_s):
                async for chunk in model.stream(request):
                    parts.append(chunk.text)
                    reported = chunk.usage or reported
        except (ModelError, ThreadlineError, TimeoutError) as error:
            # A title is a nicety: fall back to the trimmed message rather than retry a model in trouble.
            log.warning("title model %s failed: %s", model_name, error)
        except Exception:
            log.exception("title model %s failed", model_name)
        text = "".join(parts)
        if provider == "unknown" and not text:
            return "", None
        usage = reported or self._estimate(prompt_tokens(prompt, self._counter), text)
        latency_ms = round((time.monotonic() - started) * 1000)
        return text, TitleUsage(usage=usage, model=model_name, provider=provider, latency_ms=latency_ms)

    def _estimate(self, prompt: int, completion_text: str) -> Usage:
        completion = self._counter.count(completion_text)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            source="estimated",
        )

"""Rolling thread summaries: what left the recent window, folded into `threads.context_summary`."""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import UUID

from threadline.domain.errors import ThreadlineError
from threadline.domain.memory import SummarySource, snippet
from threadline.domain.models import PromptMessage, Role, Usage
from threadline.ports import ChatModels, ModelError, ModelRequest, SummaryStore, TitleUsage, TokenCounter
from threadline.service.context import prompt_tokens
from threadline.settings import ECHO_MODEL

log = logging.getLogger("threadline.summaries")

USE_AGENT_MODEL = "agent"
# An extractive summary keeps one line per message, the newest lines when it is too long.
LINE_CHARS = 160
MAX_SUMMARY_CHARS = 2_400
MAX_PROMPT_CHARS = 12_000
MAX_SUMMARY_TOKENS = 400
INSTRUCTIONS = (
    "You maintain the running summary of a conversation between a user and an assistant. Rewrite the "
    "summary so that it also covers the new messages. Keep names, numbers, dates, decisions, preferences "
    "and open questions; drop pleasantries. At most 200 words, plain text, no preamble."
)


def extractive_summary(source: SummarySource) -> str:
    """The old summary plus one trimmed line per new message; the oldest lines go first when too long."""
    lines = (source.summary or "").splitlines()
    lines += [
        f"- {message.role.value}: {snippet(message.content, LINE_CHARS)}" for message in source.messages
    ]
    while len(lines) > 1 and sum(len(line) + 1 for line in lines) > MAX_SUMMARY_CHARS:
        lines.pop(0)
    return "\n".join(lines)


class Summarizer:
    def __init__(
        self,
        *,
        store: SummaryStore,
        models: ChatModels,
        counter: TokenCounter,
        summary_model: str | None,
        default_model: str,
        window: int,
        timeout_s: float = 45.0,
    ) -> None:
        self._store = store
        self._models = models
        self._counter = counter
        self._summary_model = summary_model
        self._default_model = default_model
        self._window = window
        self._timeout_s = timeout_s

    def model_for(self, source: SummarySource) -> str | None:
        """The model that writes this summary, or None for the extractive one."""
        if self._summary_model is None:
            return None
        name = (
            source.agent_model or self._default_model
            if self._summary_model == USE_AGENT_MODEL
            else self._summary_model
        )
        return None if name == ECHO_MODEL else name

    async def summarize(self, thread_id: UUID) -> str | None:
        """Fold what left the thread's window into its summary; None if nothing left it since."""
        source = await self._store.summary_source(thread_id, self._window)
        if source is None:
            return None
        summary, usage = extractive_summary(source), None
        model_name = self.model_for(source)
        if model_name is not None:
            written, usage = await self._ask(model_name, source)
            summary = written.strip() or summary
        saved = await self._store.save_summary(source, summary, source.through_seq, usage)
        return summary if saved else None

    async def _ask(self, model_name: str, source: SummarySource) -> tuple[str, TitleUsage | None]:
        new = "\n".join(f"{m.role.value}: {m.content}" for m in source.messages)[-MAX_PROMPT_CHARS:]
        prompt = [
            PromptMessage(Role.SYSTEM, INSTRUCTIONS),
            PromptMessage(
                Role.USER, f"Summary so far:\n{source.summary or '(none)'}\n\nNew messages:\n{new}"
            ),
        ]
        request = ModelRequest(
            model=model_name, messages=prompt, temperature=0.2, max_output_tokens=MAX_SUMMARY_TOKENS
        )
        parts: list[str] = []
        reported: Usage | None = None
        provider: str | None = None
        started = time.monotonic()
        try:
            model = self._models.resolve(model_name)
            provider = model.provider
            async with asyncio.timeout(self._timeout_s):
                async for chunk in model.stream(request):
                    parts.append(chunk.text)
                    reported = chunk.usage or reported
        except (ModelError, ThreadlineError, TimeoutError) as error:
            # The extractive summary stands in; the next run's end will ask again.
            log.warning("summary model %s failed: %s", model_name, error)
        text = "".join(parts)
        if provider is None:
            return "", None
        completion = self._counter.count(text)
        prompt_count = prompt_tokens(prompt, self._counter)
        usage = reported or Usage(
            prompt_tokens=prompt_count, completion_tokens=completion, total_tokens=prompt_count + completion
        )
        latency_ms = round((time.monotonic() - started) * 1000)
        return text, TitleUsage(usage=usage, model=model_name, provider=provider, latency_ms=latency_ms)

"""The offline `threadline-echo` model: a short deterministic reply, streamed word by word."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from threadline.domain.memory import MEMORY_HEADER
from threadline.domain.models import Role
from threadline.ports import ModelChunk, ModelRequest

MAX_QUOTED_WORDS = 60
_WORDS = re.compile(r"\S+\s*")


def echo_reply(request: ModelRequest) -> str:
    """Quote the newest user message and any memory the context gave the model."""
    last_user = next((m.content for m in reversed(request.messages) if m.role is Role.USER), "")
    words = last_user.split()
    quoted = " ".join(words[:MAX_QUOTED_WORDS]) + (" …" if len(words) > MAX_QUOTED_WORDS else "")
    reply = f'You said: "{quoted}".'
    memory = [
        line.removeprefix("- ").strip()
        for message in request.messages
        if message.role is Role.SYSTEM and message.content.startswith(MEMORY_HEADER)
        for line in message.content.splitlines()[1:]
        if line.strip()
    ]
    if memory:
        reply += " I remember: " + " | ".join(memory[:3])
    return reply


class EchoChat:
    """The `ChatModel` port without a network: deterministic, for first runs and demos."""

    provider = "threadline"

    def __init__(self, *, delay_ms: int) -> None:
        self._delay_s = delay_ms / 1000

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        pieces = _WORDS.findall(echo_reply(request))
        if request.max_output_tokens is not None:
            pieces = pieces[: request.max_output_tokens]
        for piece in pieces:
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            yield ModelChunk(text=piece)
        full = len(_WORDS.findall(echo_reply(request)))
        yield ModelChunk(finish_reason="length" if len(pieces) < full else "stop")

"""Parsing Server-Sent Events the way a browser does, for assertions."""

from __future__ import annotations

from typing import Any

import msgspec


class SseEvent(msgspec.Struct, frozen=True):
    id: int | None
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data["type"])


def parse_sse(body: bytes | str) -> list[SseEvent]:
    """Events with their ids; comments (heartbeats) and the retry hint are dropped."""
    text = body.decode() if isinstance(body, bytes) else body
    events: list[SseEvent] = []
    for block in text.split("\n\n"):
        event_id: int | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append(SseEvent(event_id, msgspec.json.decode("\n".join(data))))
    return events


def reply_text(events: list[SseEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.type == "token")

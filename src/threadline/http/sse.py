"""Server-Sent Events responses that survive proxies: no buffering, a retry hint, heartbeats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from litestar.response import Stream

from threadline.domain.errors import InvalidInput


def stream_path(run_id: UUID) -> str:
    return f"/runs/{run_id}/stream"


async def _with_retry_hint(frames: AsyncIterator[bytes], retry_ms: int) -> AsyncIterator[bytes]:
    yield b"retry: %d\n\n" % retry_ms
    async for frame in frames:
        yield frame


def sse_response(frames: AsyncIterator[bytes], *, run_id: UUID, retry_ms: int) -> Stream:
    return Stream(
        _with_retry_hint(frames, retry_ms),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache, no-transform",
            # nginx buffers proxied responses unless told not to; SSE must flow event by event.
            "X-Accel-Buffering": "no",
            "Location": stream_path(run_id),
        },
    )


def parse_last_event_id(header: str | None, query: str | None) -> int:
    raw = header if header not in (None, "") else query
    if raw in (None, ""):
        return 0
    assert raw is not None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("Last-Event-ID must be an event id this stream sent (a whole number).")
    return int(raw)

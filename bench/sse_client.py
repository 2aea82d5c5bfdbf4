"""A minimal HTTP/1.1 client on raw asyncio sockets that times the events of one SSE response."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

# Markers of the events we time, as they appear on the wire. Threadline's `token` events and the
# upstream's content chunks (`{"content": ...}` deltas; the first chunk carries the role first).
THREADLINE_TOKEN = b'"type":"token"'
THREADLINE_DONE = b'"type":"done"'
THREADLINE_COMPLETED = b'"status":"completed"'
UPSTREAM_TOKEN = b'"delta":{"content":'
UPSTREAM_DONE = b"data: [DONE]"


@dataclass(frozen=True, slots=True)
class Protocol:
    """What a token and the end of a reply look like for one kind of server."""

    token: bytes
    done: bytes
    ok: bytes | None

    @classmethod
    def threadline(cls) -> Protocol:
        return cls(THREADLINE_TOKEN, THREADLINE_DONE, THREADLINE_COMPLETED)

    @classmethod
    def upstream(cls) -> Protocol:
        return cls(UPSTREAM_TOKEN, UPSTREAM_DONE, None)


@dataclass(slots=True)
class Reply:
    """The timings of one streamed reply, in seconds since the request was written."""

    sent_at: float = 0.0
    token_times: list[float] = field(default_factory=list)
    ended_at: float | None = None
    error: str | None = None
    status: int | None = None

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] - self.sent_at if self.token_times else None

    @property
    def gaps(self) -> list[float]:
        times = self.token_times
        return [b - a for a, b in itertools.pairwise(times)]

    @property
    def total(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.sent_at


class _SseProtocol(asyncio.Protocol):
    """Reads one response: the status line, then counts markers in whole SSE blocks as they arrive.

    Markers are counted in the raw (possibly chunk-encoded) bytes up to the last blank line seen:
    a chunk header can sit between two SSE blocks but never inside one, so no marker is split.
    """

    def __init__(self, protocol: Protocol, reply: Reply, finished: asyncio.Future[None]) -> None:
        self._protocol = protocol
        self._reply = reply
        self._finished = finished
        self._buffer = b""
        self._head_done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer + data
        if not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            status_line = buffer[: buffer.find(b"\r\n")]
            self._reply.status = int(status_line.split(b" ", 2)[1])
            self._head_done = True
            buffer = buffer[end + 4 :]
            if self._reply.status != 200:
                self._fail(f"HTTP {self._reply.status}")
                return
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._buffer = buffer
            return
        blocks, self._buffer = buffer[: cut + 2], buffer[cut + 2 :]
        count = blocks.count(self._protocol.token)
        if count:
            self._reply.token_times.extend([now] * count)
        if self._protocol.done in blocks:
            self._reply.ended_at = now
            if self._protocol.ok is not None and self._protocol.ok not in blocks:
                self._reply.error = "not completed"
            if not self._finished.done():
                self._finished.set_result(None)

    def _fail(self, error: str) -> None:
        self._reply.error = self._reply.error or error
        if not self._finished.done():
            self._finished.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reply.ended_at is None:
            self._fail(f"connection lost: {exc!r}" if exc else "closed before the end of the reply")


def request_bytes(method: str, path: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def stream_once(host: str, port: int, request: bytes, protocol: Protocol, *, timeout_s: float) -> Reply:
    """Open a connection, send `request`, time the SSE reply to its end, close the connection."""
    loop = asyncio.get_running_loop()
    reply = Reply()
    finished: asyncio.Future[None] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout_s):
            transport, _ = await loop.create_connection(
                lambda: _SseProtocol(protocol, reply, finished), host, port
            )
            reply.sent_at = time.perf_counter()
            transport.write(request)
            await finished
    except TimeoutError:
        reply.error = reply.error or f"timed out after {timeout_s} s"
    except OSError as error:
        reply.error = reply.error or f"connect failed: {error!r}"
    finally:
        if transport is not None:
            transport.close()
    return reply

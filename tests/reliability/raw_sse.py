"""SSE over a raw socket, so hundreds of clients can read a few tokens and then all vanish at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Self

import msgspec

TOKEN = b'"type":"token"'
DONE = b'"type":"done"'


class RawStream:
    """One `POST /chat/stream` read from a plain socket; `abort` resets it like a client that died."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.received = b""

    @classmethod
    async def open(cls, port: int, token: str, body: dict[str, Any]) -> Self:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = msgspec.json.encode(body)
        head = (
            f"POST /chat/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        return cls(reader, writer)

    @property
    def tokens(self) -> int:
        return self.received.count(TOKEN)

    @property
    def status(self) -> int | None:
        if not self.received.startswith(b"HTTP/1.1 "):
            return None
        return int(self.received[9:12])

    @property
    def run_id(self) -> str | None:
        marker = b'"run_id":"'
        at = self.received.find(marker)
        return None if at < 0 else self.received[at + len(marker) : at + len(marker) + 36].decode()

    async def read_tokens(self, count: int, *, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while self.tokens < count and DONE not in self.received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.tokens} of {count} tokens in {within_s} s: {self.received[-300:]!r}"
                )
            async with asyncio.timeout(remaining):
                chunk = await self._reader.read(65536)
            if not chunk:
                raise ConnectionError(f"closed after {self.tokens} tokens: {self.received[-300:]!r}")
            self.received += chunk

    def abort(self) -> None:
        """Reset the connection without a goodbye (RST), as a killed browser tab does."""
        with contextlib.suppress(OSError):
            self._writer.transport.abort()
            self._writer.close()

"""Real Threadline processes for end-to-end tests, and an SSE reader that can stop part way.

`Server` runs one `uvicorn threadline.app:create_app --factory` process with its own log file and
can be killed, terminated and restarted on the same port. `open_sse` reads a stream as it arrives,
block by block, so a test can leave after k tokens: closing the stream is a client disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
# Settings a test must never inherit from the environment that runs pytest.
_FOREIGN = ("THREADLINE_", "OPENAI_", "DATABASE_URL", "REDIS_URL", "TEST_", "PORT", "HOST")

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without Threadline, model, database or Redis settings, plus `settings`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return {**keep, "PYTHONUNBUFFERED": "1", **settings}


class Server:
    """One uvicorn process serving Threadline on 127.0.0.1:`port`, logging to `log_path`."""

    def __init__(self, name: str, *, env: Mapping[str, str], log_dir: Path, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.log_path = log_dir / f"{name}.log"
        self._env = dict(env)
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Server({self.name!r}, {self.url}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Spawn the process; `wait_ready` waits for it to answer."""
        if self.alive:
            raise RuntimeError(f"{self} is already running")
        command = [
            str(BIN / "uvicorn"), "threadline.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {self.name}: starting {' '.join(command)} =====\n".encode())
            log.flush()
            # A session of its own, so signals meant for pytest never reach it, and ours only reach it.
            self._process = subprocess.Popen(
                command, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while True:
                if not self.alive:
                    raise RuntimeError(f"{self} exited before it was ready:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/ready").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self} was not ready within {timeout_s} s:\n{self.log_tail()}")
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to save anything."""
        if self._process is not None and self.alive:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(STOP_TIMEOUT_S)

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait for the process to drain; SIGKILL if it outstays `timeout_s`."""
        if self._process is None or not self.alive:
            return None if self._process is None else self._process.returncode
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self} ignored SIGTERM for {timeout_s} s:\n{self.log_tail()}") from None

    def restart(self) -> None:
        self.terminate()
        self.start()
        self.wait_ready()

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, chars: int = 6_000) -> str:
        text = self.log_since(0)
        return text[-chars:]


class SseBlock(msgspec.Struct, frozen=True):
    """One block of an SSE stream as sent, blank-line terminator included."""

    raw: bytes
    id: int | None
    data: dict[str, Any] | None
    comments: tuple[str, ...]
    retry: int | None

    @property
    def type(self) -> str | None:
        return None if self.data is None else str(self.data["type"])

    @classmethod
    def parse(cls, raw: bytes) -> SseBlock:
        event_id: int | None = None
        retry: int | None = None
        data: list[str] = []
        comments: list[str] = []
        for line in raw.decode().split("\n"):
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line.startswith("retry:"):
                retry = int(line[6:].strip())
        decoded = msgspec.json.decode("\n".join(data)) if data else None
        return cls(raw, event_id, decoded, tuple(comments), retry)


class SseStream:
    """An SSE response read incrementally; everything received so far stays in `blocks`."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.blocks: list[SseBlock] = []
        self.ended = False
        self.tail = b""
        self._chunks = response.aiter_bytes()

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def events(self) -> list[SseBlock]:
        return [b for b in self.blocks if b.data is not None]

    @property
    def frames(self) -> list[bytes]:
        """The raw bytes of every event, as a byte-identical replay must repeat them."""
        return [b.raw for b in self.events]

    @property
    def tokens(self) -> list[SseBlock]:
        return [b for b in self.events if b.type == "token"]

    @property
    def text(self) -> str:
        return "".join(str(b.data["content"]) for b in self.tokens if b.data is not None)

    @property
    def last_id(self) -> int:
        ids = [b.id for b in self.events if b.id is not None]
        return ids[-1] if ids else 0

    @property
    def ids(self) -> list[int | None]:
        return [b.id for b in self.events]

    def first(self, kind: str) -> dict[str, Any]:
        for block in self.events:
            if block.type == kind and block.data is not None:
                return block.data
        raise AssertionError(f"no `{kind}` event in {self.describe()}")

    @property
    def done(self) -> dict[str, Any] | None:
        last = self.events[-1] if self.events else None
        return last.data if last is not None and last.type == "done" else None

    def describe(self, limit: int = 40) -> str:
        shown = [f"{b.id}:{b.type}" if b.data is not None else repr(b.raw[:30]) for b in self.blocks]
        more = f" … {len(shown) - limit} more" if len(shown) > limit else ""
        status = f"HTTP {self.status_code}"
        return f"{status} blocks={shown[:limit]}{more} ended={self.ended} tail={self.tail[:200]!r}"

    async def next_block(self) -> SseBlock | None:
        """The next whole block, or None once the server has closed the stream."""
        buffer = self.tail
        while b"\n\n" not in buffer:
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self.tail, self.ended = buffer, True
                return None
            buffer += chunk
        raw, _, self.tail = buffer.partition(b"\n\n")
        block = SseBlock.parse(raw + b"\n\n")
        self.blocks.append(block)
        return block

    async def read_until(self, done: Callable[[SseBlock], bool], *, what: str, within_s: float) -> None:
        """Read until a block satisfies `done`; fail with what arrived if the stream ends or stalls."""
        try:
            async with asyncio.timeout(within_s):
                while (block := await self.next_block()) is not None:
                    if done(block):
                        return
        except TimeoutError:
            raise AssertionError(f"no {what} within {within_s} s: {self.describe()}") from None
        except httpx.HTTPError as error:
            raise AssertionError(f"stream broke before {what}: {error!r}: {self.describe()}") from None
        raise AssertionError(f"stream ended before {what}: {self.describe()}")

    async def read_tokens(self, count: int, *, within_s: float = 10.0) -> None:
        await self.read_until(
            lambda _: len(self.tokens) >= count, what=f"{count} token events", within_s=within_s
        )

    async def read_to_done(self, *, within_s: float = 15.0) -> dict[str, Any]:
        """Read to the terminal `done` event, then check the server ends the stream there."""
        await self.read_until(lambda block: block.type == "done", what="a `done` event", within_s=within_s)
        done = self.done
        assert done is not None
        try:
            async with asyncio.timeout(5):
                extra = await self.next_block()
        except TimeoutError:
            raise AssertionError(f"the stream stayed open after `done`: {self.describe()}") from None
        assert extra is None, f"a block after `done`: {extra!r}"
        return done


@contextlib.asynccontextmanager
async def open_sse(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json: Any = None,
    params: Mapping[str, str] | None = None,
    read_timeout_s: float = 10.0,
) -> AsyncIterator[SseStream]:
    """An SSE response being read; leaving the block closes the connection (a client disconnect).

    A client of its own per stream, so closing it closes the socket instead of pooling it.
    """
    timeout = httpx.Timeout(10.0, read=read_timeout_s)
    async with (
        httpx.AsyncClient(timeout=timeout) as client,
        client.stream(method, url, headers=headers, json=json, params=params) as response,
    ):
        if response.status_code != 200:
            await response.aread()
        yield SseStream(response)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    what: str,
    within_s: float,
    every_s: float = 0.1,
) -> T:
    """Call `probe` until `ok(result)`; fail with the last result after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        result = await probe()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s} s; last seen: {result!r}")
        await asyncio.sleep(every_s)

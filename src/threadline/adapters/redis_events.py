"""`RedisEventLog`: the event log on Redis Streams, readable from every process."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from importlib.resources import files
from typing import Any, cast
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

from threadline.domain.events import Frame
from threadline.ports import Batch, RunAppend

Entry = tuple[bytes, dict[bytes, bytes]]

# Frames live at stream ids `0-<frame.id>`; the end marker, `1-0`, sorts after any of them.
DATA = b"d"
# One EVALSHA per run and call: atomic, and measured faster than a pipelined XADD and EXPIRE.
APPEND_LUA = files("threadline.adapters").joinpath("redis_events_append.lua").read_text()
# Frames one read returns at most, so a late reader of a long run gets bounded replies.
READ_COUNT = 1000
# How long the server may take past the block before a blocking read counts as lost.
BLOCK_GRACE_S = 5.0
# How often a reader polls when every blocking slot is taken.
POLL_S = 0.1


class RedisEventLog:
    """The `EventLog` port on Redis Streams: one stream per run, `<key_prefix><run_id>`.

    Appends go through one Lua script, `redis_events_append.lua`: per frame `XADD 0-<id> MAXLEN ~
    max_frames`, plus `XADD 1-0` (the end marker) after the run's final frame, then `EXPIRE
    live_ttl_s` (or `retention_s` once the run is finished). `append` and `finish` are one EVALSHA
    each; `append_runs` sends one EVALSHA per run, all in one pipelined round trip. Per read, `XLEN`
    and `XRANGE` in one round trip, then, only when the reader is caught up, one `XREAD BLOCK`.

    Pool sizing: a reader in `XREAD BLOCK` holds a pooled connection for up to `wait_s` (the
    heartbeat interval), so a process needs about one connection per SSE client following a live
    run, plus a few for appends and everything else. redis-py's pool refuses connections past
    `max_connections` (100 by default in redis-py 8) and a `BlockingConnectionPool` queues for
    them; either way appends must never wait behind readers. So at most `max_blocked_reads` reads
    block at once (default: three quarters of the pool) and the rest poll every 100 ms without
    holding a connection. Give the client room for the expected followers, e.g.
    `Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, max_connections=1000)`;
    Redis accepts 10,000 clients by default.

    The client must have a `socket_timeout` (it bounds every call but the blocking read, which
    gets `wait_s` plus a grace period) and must not decode responses (frames are bytes). Every
    process must use the same `max_frames`: a reader that finds a stream at the cap with frames
    missing after its position gets None, and the service rebuilds the stream from Postgres.
    Frame ids start at 1; appending after the end marker raises `ResponseError`.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        max_frames: int = 10_000,
        retention_s: int = 600,
        key_prefix: str = "threadline:run:",
        live_ttl_s: int = 300,
        max_blocked_reads: int | None = None,
    ) -> None:
        pool = redis.connection_pool
        if pool.connection_kwargs.get("decode_responses"):
            raise ValueError("RedisEventLog needs a client with decode_responses=False: frames are bytes.")
        if pool.connection_kwargs.get("socket_timeout") is None:
            raise ValueError("RedisEventLog needs a client with a socket_timeout.")
        self._redis = redis
        self._max_frames = max_frames
        self._retention_s = retention_s
        self._live_ttl_s = live_ttl_s
        self._prefix = key_prefix
        if max_blocked_reads is None:
            max_blocked_reads = max(1, pool.max_connections * 3 // 4)
        self._blocking = asyncio.Semaphore(max_blocked_reads)
        self._append = redis.register_script(APPEND_LUA)

    async def append(self, run_id: UUID, frame: Frame) -> None:
        await self._append(keys=[self._key(run_id)], args=self._args([frame], finished=False))

    async def append_runs(self, appends: Sequence[RunAppend]) -> list[bool]:
        replies = await self._evalsha_each(appends)
        lost = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            # Redis restarted and forgot the script: load it, and send what it refused again.
            await self._redis.script_load(APPEND_LUA)
            for index, reply in zip(lost, await self._evalsha_each([appends[i] for i in lost]), strict=True):
                replies[index] = reply
        return [reply == 1 for reply in replies]

    async def _evalsha_each(self, appends: Sequence[RunAppend]) -> list[Any]:
        """One EVALSHA per run in one pipelined round trip; a run's error is returned in its place."""
        pipe = self._redis.pipeline(transaction=False)
        for append in appends:
            args = self._args(append.frames, finished=append.finished)
            pipe.evalsha(self._append.sha, 1, self._key(append.run_id), *args)
        return await pipe.execute(raise_on_error=False)

    def _key(self, run_id: UUID) -> str:
        return self._prefix + str(run_id)

    def _args(self, frames: Sequence[Frame], *, finished: bool) -> list[EncodableT]:
        args: list[EncodableT] = [self._max_frames, self._live_ttl_s, self._retention_s, int(finished)]
        for frame in frames:
            args += (frame.id, frame.data, int(frame.terminal))
        return args

    async def read(self, run_id: UUID, after: int, wait_s: float) -> Batch | None:
        key = self._key(run_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(key)
        pipe.xrange(key, min=f"(0-{after}", count=READ_COUNT)
        length, entries = await pipe.execute()
        if length == 0:
            return None
        if length >= self._max_frames and await self._trimmed_past(key, after):
            return None
        if not entries and wait_s > 0:
            entries = await self._wait(key, after, wait_s)
        return _batch(entries)

    async def finish(self, run_id: UUID) -> None:
        # Idempotent: the end marker is placed once; a run the log never saw is not created.
        await self._append(keys=[self._key(run_id)], args=self._args([], finished=True))

    async def _trimmed_past(self, key: str, after: int) -> bool:
        """Whether MAXLEN may have dropped frames after `after` (it keeps at least `max_frames`)."""
        first = cast("list[Entry]", await self._redis.xrange(key, count=1))
        # Ids are integers: when the oldest frame kept is `after + 1`, nothing can be missing.
        return bool(first) and first[0][0].startswith(b"0-") and int(first[0][0][2:]) > after + 1

    async def _wait(self, key: str, after: int, wait_s: float) -> list[Entry]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (remaining := deadline - loop.time()) > 0:
            if not self._blocking.locked():
                async with self._blocking:
                    return await self._block(key, after, remaining)
            await asyncio.sleep(min(POLL_S, remaining))
            entries = cast("list[Entry]", await self._redis.xrange(key, min=f"(0-{after}", count=READ_COUNT))
            if entries:
                return entries
        return []

    async def _block(self, key: str, after: int, wait_s: float) -> list[Entry]:
        """XREAD BLOCK on a pooled connection read without the client's socket_timeout."""
        block_ms = max(1, math.ceil(wait_s * 1000))
        pool = self._redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # a decorator drops its types
        try:
            # A timeout or cancellation inside read_response disconnects the connection, so no
            # late XREAD reply is left on it for the next user of the pool.
            async with asyncio.timeout(wait_s + BLOCK_GRACE_S):
                await conn.send_command(
                    "XREAD", "COUNT", READ_COUNT, "BLOCK", block_ms, "STREAMS", key, f"0-{after}"
                )
                reply = await conn.read_response(timeout=math.inf)
        finally:
            await pool.release(conn)
        return _xread_entries(reply)


def _xread_entries(reply: Any) -> list[Entry]:
    """The entries of a one-stream XREAD reply, as RESP2 (a list) or RESP3 (a map) gives it."""
    if not reply:
        return []
    raw = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    return [(entry_id, dict(zip(fields[::2], fields[1::2], strict=True))) for entry_id, fields in raw]


def _batch(entries: list[Entry]) -> Batch:
    frames = [Frame(int(entry_id[2:]), fields[DATA]) for entry_id, fields in entries if DATA in fields]
    ended = len(frames) < len(entries) or (bool(frames) and frames[-1].terminal)
    return Batch(frames, ended=ended)

"""A local fake of the OpenAI HTTP API (chat, embeddings, models) on raw asyncio, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import http
import itertools
import math
import random
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

import msgspec

try:
    import uvloop

    _new_event_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # uvicorn[standard] installs uvloop everywhere but Windows
    _new_event_loop = asyncio.new_event_loop

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "text-embedding-3-large")
DEFAULT_EMBEDDING_DIM = 1536
_EMBEDDING_DIMS = {"text-embedding-3-large": 3072}
_FINGERPRINT = "fp_fakeopenai"
_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\s*\S+\s*")
_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 32 * 1024 * 1024
_MALFORMED = b"{not json"
# (type, code) of OpenAI's error bodies, by status; 5xx default to server_error.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True, kw_only=True)
class Behaviour:
    """How the next chat completion requests are answered; assign a new one to change it.

    Counts (`reset_after`, `stall_after`, `malformed_after`) are content chunks already sent, so 0
    means before the first content chunk. `fail_times` restarts whenever a behaviour is assigned.
    """

    reply: str | None = None
    ttft_s: float = 0.0
    gap_s: float = 0.0
    fail_status: int | None = None
    fail_times: int = 0
    retry_after_s: float = 0.0
    reset_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0
    malformed_after: int | None = None


def split_tokens(text: str) -> list[str]:
    """The content chunks of a reply: one word with its whitespace each; they join back to `text`."""
    return _TOKEN.findall(text) or ([text] if text else [])


def count_prompt_tokens(messages: list[Any]) -> int:
    """Prompt tokens as the fake reports them: words (runs of non-space) of every text part, +3 per message.

    Completion tokens are the number of content chunks sent, so `len(split_tokens(reply))` unless cut.
    """
    return sum(len(_WORD.findall(_text_of(m.get("content")))) + 3 for m in messages if isinstance(m, dict))


def default_reply(messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return f"Echo: {_text_of(users[-1].get('content')) if users else ''}"


@functools.lru_cache(maxsize=4096)
def fake_embedding(text: str, dimensions: int) -> tuple[float, ...]:
    """A unit vector seeded by the text; shorter `dimensions` renormalise a prefix, as OpenAI's do."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return tuple(x / norm for x in vector)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _error_body(status: int, message: str) -> bytes:
    kind, code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return msgspec.json.encode({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _AbortedError(Exception):
    """The fake reset the connection on purpose."""


class _GoneError(Exception):
    """The client left while a response was being written."""


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    body: bytes
    keep_alive: bool
    http11: bool


@dataclass(frozen=True, slots=True)
class _Chunks:
    """Encodes the chat.completion(.chunk) objects of one completion."""

    id: str
    created: int
    model: str
    include_usage: bool

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return msgspec.json.encode(self._envelope("chat.completion.chunk", [choice], usage=None))

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        return msgspec.json.encode(self._envelope("chat.completion.chunk", [], usage=usage))

    def completion(self, content: str, finish_reason: str, usage: dict[str, Any]) -> bytes:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": [],
        }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        return msgspec.json.encode(self._envelope("chat.completion", [choice], usage=usage))

    def _envelope(self, kind: str, choices: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        envelope = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": choices,
        }
        # OpenAI puts "usage": null on every chunk only when include_usage asked for the final one.
        if usage is not None or self.include_usage:
            envelope["usage"] = usage
        return envelope


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; a Protocol, so a client leaving is noticed at once."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self._fake = fake
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._data = asyncio.Event()
        self._gone = False
        self._aborting = False
        self._chunked = False
        self._continued = False
        self._close_after = False
        self.in_flight = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.task = asyncio.get_running_loop().create_task(self._serve())
        self._fake._opened(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._data.set()

    def eof_received(self) -> bool:
        # HTTP clients do not half-close while awaiting a reply, so EOF means the client left.
        self._peer_left()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer_left()

    def _peer_left(self) -> None:
        if self._gone:
            return
        self._gone = True
        self._data.set()
        if self.in_flight and not self._aborting:
            self._fake._client_disconnected()
            # Cancelling wakes the handler out of any pacing sleep, so the client's close is noticed now.
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()

    async def _serve(self) -> None:
        try:
            while (request := await self._next_request()) is not None:
                await self._fake._handle(self, request)
                if self._close_after or self._gone:
                    break
        except asyncio.CancelledError:
            if not self._gone:
                raise
        except (_AbortedError, _GoneError):
            pass
        except _BadRequestError as exc:
            with contextlib.suppress(_GoneError):
                self.respond(exc.status, _error_body(exc.status, str(exc)), keep_alive=False)
        except Exception as exc:
            # A bug in the fake must fail the test that provoked it, not hang it.
            self._fake._record(self._fake.errors, exc)
            with contextlib.suppress(_GoneError):
                self.respond(500, _error_body(500, f"fake_openai bug: {exc!r}"), keep_alive=False)
        finally:
            self.in_flight = False
            if self._transport is not None:
                self._transport.close()
            self._fake._closed(self)

    async def _next_request(self) -> _Request | None:
        while not self._gone:
            request = self._parse()
            if request is not None:
                return request
            self._data.clear()
            await self._data.wait()
        return None

    def _parse(self) -> _Request | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD_BYTES:
                raise _BadRequestError(431, "Request header fields too large")
            return None
        request_line, *header_lines = self._buffer[:end].decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequestError(400, "Malformed request line")
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequestError(400, "Malformed header line")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _BadRequestError(411, "Send the request body with Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequestError(400, "Invalid Content-Length") from None
        if not 0 <= length <= _MAX_BODY_BYTES:
            raise _BadRequestError(413, "Request body too large")
        if len(self._buffer) < end + 4 + length:
            # curl waits a second for this before sending bodies over 1 KiB.
            if "100-continue" in headers.get("expect", "").lower() and not self._continued:
                self._continued = True
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        self._continued = False
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        http11 = parts[2] == "HTTP/1.1"
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if http11 else "keep-alive" in connection
        return _Request(parts[0], parts[1].partition("?")[0], body, keep_alive, http11)

    def respond(
        self, status: int, body: bytes, *, keep_alive: bool, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        head = [("content-type", "application/json"), ("content-length", str(len(body))), *headers]
        self._write(self._head(status, head, keep_alive=keep_alive) + body)

    def open_stream(self, request: _Request) -> None:
        # HTTP/1.0 has no chunked encoding: its stream ends by closing the connection.
        self._chunked = request.http11
        head = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
        if self._chunked:
            head.append(("transfer-encoding", "chunked"))
        self._write(self._head(200, head, keep_alive=request.keep_alive and self._chunked))

    def send_event(self, data: bytes) -> None:
        event = b"data: " + data + b"\n\n"
        self._write(b"%x\r\n%s\r\n" % (len(event), event) if self._chunked else event)

    def close_stream(self) -> None:
        if self._chunked:
            self._write(b"0\r\n\r\n")

    def abort(self) -> None:
        self._aborting = True
        if self._transport is not None:
            self._transport.abort()

    def _head(self, status: int, headers: list[tuple[str, str]], *, keep_alive: bool) -> bytes:
        self._close_after = self._close_after or not keep_alive
        headers += [
            ("connection", "keep-alive" if keep_alive else "close"),
            ("x-request-id", f"req_fake{next(self._fake._ids):012d}"),
            ("openai-version", "2020-10-01"),
        ]
        lines = [f"HTTP/1.1 {status} {_reason(status)}", *(f"{name}: {value}" for name, value in headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, data: bytes) -> None:
        # No flow control: what a client leaves unread is bounded by the size of one reply.
        if self._transport is None or self._transport.is_closing():
            self._peer_left()
            raise _GoneError
        self._transport.write(data)


class FakeOpenAI:
    """The OpenAI HTTP API on 127.0.0.1, served from its own event loop in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.reported_usage: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.disconnects = 0
        self.active_streams = 0
        self.connections_opened = 0
        self._behaviour = Behaviour()
        self._failures = 0
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, behaviour: Behaviour) -> None:
        with self._changed:
            self._behaviour = behaviour
            self._failures = 0

    def reset(self) -> None:
        """Default behaviour and empty records; the live counts (active_streams, connections_opened) stay."""
        with self._changed:
            self._behaviour = Behaviour()
            self._failures = 0
            self.requests.clear()
            self.embedding_requests.clear()
            self.reported_usage.clear()
            self.errors.clear()
            self.disconnects = 0

    # The deadline belongs to the waiting thread: an asyncio.timeout around to_thread could not stop it.
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait, without blocking the caller's loop, until `predicate()` holds; TimeoutError after that."""
        await asyncio.to_thread(self.wait_until, predicate, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            # Short waits re-check predicates that also depend on state the fake does not notify about.
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake_openai: condition not met within {timeout} s")
                self._changed.wait(min(remaining, 0.05))

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already started")
        loop = _new_event_loop()
        self._loop, self._stopping = loop, False
        self._thread = threading.Thread(target=self._run, args=(loop,), name="fake-openai", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        # A deep backlog so a benchmark can open 1,000 connections at once.
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        tasks = [c.task for c in connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _record(self, records: list[Any], item: Any) -> None:
        with self._changed:
            records.append(item)
            self._changed.notify_all()

    def _count(self, name: str, delta: int) -> None:
        with self._changed:
            setattr(self, name, getattr(self, name) + delta)
            self._changed.notify_all()

    def _opened(self, connection: _Connection) -> None:
        self._connections.add(connection)
        self._count("connections_opened", 1)

    def _closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)

    def _client_disconnected(self) -> None:
        if not self._stopping:
            self._count("disconnects", 1)

    def _take_failure(self) -> tuple[Behaviour, int | None]:
        with self._changed:
            behaviour = self._behaviour
            status = behaviour.fail_status
            if status is None or (behaviour.fail_times and self._failures >= behaviour.fail_times):
                return behaviour, None
            self._failures += 1
            return behaviour, status

    async def _handle(self, conn: _Connection, request: _Request) -> None:
        match request.method, request.path:
            case "POST", "/v1/chat/completions":
                await self._chat(conn, request)
            case "POST", "/v1/embeddings":
                self._embeddings(conn, request)
            case "GET", "/v1/models":
                models = [self._model(name) for name in MODELS]
                self._json(conn, request, 200, msgspec.json.encode({"object": "list", "data": models}))
            case "GET", path if path.removeprefix("/v1/models/") in MODELS:
                self._json(
                    conn, request, 200, msgspec.json.encode(self._model(path.removeprefix("/v1/models/")))
                )
            case method, path:
                self._json(conn, request, 404, _error_body(404, f"Invalid URL ({method} {path})"))

    @staticmethod
    def _model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}

    @staticmethod
    def _json(conn: _Connection, request: _Request, status: int, body: bytes, **headers: str) -> None:
        conn.respond(status, body, keep_alive=request.keep_alive, headers=headers.items())

    @staticmethod
    def _decode(conn: _Connection, request: _Request) -> dict[str, Any] | None:
        try:
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            body = None
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. Send a JSON object."
            FakeOpenAI._json(conn, request, 400, _error_body(400, message))
            return None
        return body

    async def _chat(self, conn: _Connection, request: _Request) -> None:
        body = self._decode(conn, request)
        if body is None:
            return
        self._record(self.requests, body)
        behaviour, fail_status = self._take_failure()
        messages, model = body.get("messages"), body.get("model")
        if fail_status is not None:
            retry = behaviour.retry_after_s
            message = f"fake_openai: injected {fail_status} failure"
            after = {"retry-after": str(math.ceil(retry)), "retry-after-ms": str(round(retry * 1000))}
            self._json(conn, request, fail_status, _error_body(fail_status, message), **after)
            return
        if not isinstance(messages, list) or not messages or not isinstance(model, str):
            self._json(
                conn, request, 400, _error_body(400, "'model' and a non-empty 'messages' are required")
            )
            return
        tokens = split_tokens(behaviour.reply if behaviour.reply is not None else default_reply(messages))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish_reason = "stop"
        if isinstance(limit, int) and 0 < limit < len(tokens):
            tokens, finish_reason = tokens[:limit], "length"
        usage = _usage(count_prompt_tokens(messages), len(tokens))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = _Chunks(f"chatcmpl-fake{next(self._ids):016d}", int(time.time()), model, include_usage)
        conn.in_flight = True
        if body.get("stream") is True:
            await self._stream(
                conn,
                request,
                behaviour=behaviour,
                chunks=chunks,
                tokens=tokens,
                finish_reason=finish_reason,
                usage=usage,
            )
        else:
            malformed = await _Pacer(conn, behaviour, tokens, lambda _: None, lambda: None).play()
            completion = chunks.completion("".join(tokens), finish_reason, usage)
            self._record(self.reported_usage, usage)
            self._json(conn, request, 200, _MALFORMED if malformed else completion)
        conn.in_flight = False

    async def _stream(
        self,
        conn: _Connection,
        request: _Request,
        *,
        behaviour: Behaviour,
        chunks: _Chunks,
        tokens: list[str],
        finish_reason: str,
        usage: dict[str, Any],
    ) -> None:
        conn.open_stream(request)
        self._count("active_streams", 1)
        try:
            conn.send_event(chunks.chunk({"role": "assistant", "content": "", "refusal": None}))

            def emit(token: str) -> None:
                conn.send_event(chunks.chunk({"content": token}))

            await _Pacer(conn, behaviour, tokens, emit, lambda: conn.send_event(_MALFORMED)).play()
            # Recorded before the last bytes leave: a client on another thread may look once it has them.
            self._record(self.reported_usage, usage)
            conn.send_event(chunks.chunk({}, finish_reason))
            if chunks.include_usage:
                conn.send_event(chunks.usage_chunk(usage))
            conn.send_event(b"[DONE]")
            conn.close_stream()
        finally:
            self._count("active_streams", -1)

    def _embeddings(self, conn: _Connection, request: _Request) -> None:
        body = self._decode(conn, request)
        if body is None:
            return
        self._record(self.embedding_requests, body)
        raw, model = body.get("input"), body.get("model")
        texts = self._embedding_inputs(raw)
        dimensions = body.get("dimensions") or _EMBEDDING_DIMS.get(str(model), DEFAULT_EMBEDDING_DIM)
        if not texts or not isinstance(model, str) or not isinstance(dimensions, int) or dimensions < 1:
            self._json(conn, request, 400, _error_body(400, "'model', 'input' and a positive 'dimensions'"))
            return
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dimensions)
            # The SDK asks for base64 by default: little-endian float32, as OpenAI sends.
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if as_base64
                else list(vector)
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        words = sum(len(_WORD.findall(text)) for text in texts)
        response = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }
        self._json(conn, request, 200, msgspec.json.encode(response))

    @staticmethod
    def _embedding_inputs(raw: Any) -> list[str]:
        """Inputs as texts: a string, strings, token ids (one input), or lists of token ids."""
        if isinstance(raw, str):
            return [raw]
        if not isinstance(raw, list) or not raw:
            return []
        if all(isinstance(item, int) for item in raw):
            return [" ".join(map(str, raw))]
        return [
            item if isinstance(item, str) else " ".join(map(str, item))
            for item in raw
            if isinstance(item, str | list)
        ]


class _Pacer:
    """Plays the content chunks of one reply on loop timers, injecting the behaviour's faults.

    Timer callbacks rather than a task sleeping per chunk: a third less CPU at 1,000 concurrent streams.
    """

    def __init__(
        self,
        conn: _Connection,
        behaviour: Behaviour,
        tokens: list[str],
        emit: Callable[[str], None],
        malform: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn, self._behaviour, self._tokens = conn, behaviour, tokens
        self._emit, self._malform = emit, malform
        self._done: asyncio.Future[bool] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._step = self._check
        self._sent = 0
        self._malformed = False

    async def play(self) -> bool:
        """Resolve once every chunk is out; True when a malformed one was sent."""
        self._resume()
        try:
            return await self._done
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def _resume(self) -> None:
        self._timer = None
        try:
            while not self._done.done():
                delay = self._step()
                if delay > 0:
                    self._timer = self._loop.call_later(delay, self._resume)
                    return
        except Exception as exc:  # raised into play(), so a fault or a bug ends the response, never hangs it
            if not self._done.done():  # a client that left has already cancelled it
                self._done.set_exception(exc)

    def _check(self) -> float:
        if self._behaviour.reset_after == self._sent:
            self._conn.abort()
            raise _AbortedError
        self._step = self._pace
        return self._behaviour.stall_s if self._behaviour.stall_after == self._sent else 0.0

    def _pace(self) -> float:
        if self._behaviour.malformed_after == self._sent:
            self._malform()
            self._malformed = True
        if self._sent == len(self._tokens):
            self._done.set_result(self._malformed)
            return 0.0
        self._step = self._send
        return self._behaviour.ttft_s if self._sent == 0 else self._behaviour.gap_s

    def _send(self) -> float:
        self._emit(self._tokens[self._sent])
        self._sent += 1
        self._step = self._check
        return 0.0

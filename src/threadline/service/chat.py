"""A chat turn: commit the question, then a run task calls the model and publishes its reply."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
import msgspec

from threadline.domain.errors import InvalidInput, MessageTooLong, Unavailable
from threadline.domain.events import (
    DoneEvent,
    ErrorEvent,
    EventIds,
    RunEvent,
    SourcesEvent,
    StartEvent,
    TokenEvent,
    UsageEvent,
    UsagePayload,
)
from threadline.domain.memory import Recollection
from threadline.domain.models import Agent, ChatTurn, Message, Run, RunStatus, Usage
from threadline.ports import (
    ChatModel,
    ChatModels,
    ChatStore,
    EventLog,
    ModelError,
    ModelRequest,
    NewTurn,
    NoMetrics,
    RunMetrics,
    RunOutcome,
    TokenCounter,
)
from threadline.service.admission import AdmissionControl, Ticket
from threadline.service.context import build_prompt, prompt_tokens
from threadline.service.memory import Recaller
from threadline.service.runs import RunRegistry
from threadline.settings import Settings

log = logging.getLogger("threadline.runs")
# Model errors that mean "too slow", recorded as a `timeout` run rather than a `failed` one.
TIMEOUT_CODES = frozenset({"upstream_timeout", "upstream_stalled"})
# How long a committed run's own database step waits out a busy pool or a Postgres that is down.
PATIENCE_S = 30.0
T = TypeVar("T")


class ChatInput(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    thread_id: UUID | None = None
    agent: str | None = None
    client_message_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    # Who sent it (http/client_info.py); recorded, but not part of what makes a retry the same request.
    client: dict[str, Any] = msgspec.field(default_factory=dict)


def fingerprint(request: ChatInput) -> str:
    """What makes two requests with one client_message_id the same request."""
    body = msgspec.json.encode([request.thread_id, request.agent, request.message, request.metadata])
    return hashlib.sha256(body).hexdigest()


def format_error(code: str, message: str) -> str:
    """How a run's error is stored: `code: message`, split again by `parse_error`."""
    return f"{code}: {message}"


async def patiently(step: Callable[[], Awaitable[T]], *, within_s: float = PATIENCE_S) -> T:
    """A committed run's own database step, retried while the database is busy or down.

    `Unavailable` means no connection was free within the acquire timeout, or Postgres could not be
    reached or went away mid-step (restarting, failing over). The steps given here are idempotent
    (mark running, read the history, finish the run exactly once), so trying again is safe. New
    requests get the 503; a run already admitted waits instead of failing (`make reliability`: 16
    of 300 runs failed on a busy pool in a storm; a reply that ended while Postgres was stopped was
    announced `completed` but recorded `interrupted`).
    """
    deadline = time.monotonic() + within_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await step()
        except Unavailable:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            await asyncio.sleep(min(0.1 * attempt, 1.0, left))


def parse_error(stored: str) -> tuple[str, str]:
    code, _, message = stored.partition(": ")
    return code, message


class _Reply:
    """The reply text as it grows, and when it is due to be saved."""

    def __init__(self, *, interval_s: float, every_tokens: int) -> None:
        self._parts: list[str] = []
        self._interval_s = interval_s
        self._every_tokens = every_tokens
        self._saved_at = time.monotonic()
        self._unsaved = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._unsaved += 1

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def due(self) -> bool:
        now = time.monotonic()
        if self._unsaved >= self._every_tokens or (
            self._unsaved and now - self._saved_at >= self._interval_s
        ):
            self._saved_at, self._unsaved = now, 0
            return True
        return False


class ChatService:
    def __init__(
        self,
        *,
        store: ChatStore,
        models: ChatModels,
        events: EventLog,
        counter: TokenCounter,
        registry: RunRegistry,
        settings: Settings,
        owner: str,
        stream_url: Callable[[UUID, str], str],
        admission: AdmissionControl | None = None,
        metrics: RunMetrics | None = None,
        memory: Recaller | None = None,
    ) -> None:
        self._memory = memory
        self._admission = admission
        self._metrics = metrics or NoMetrics()
        self._store = store
        self._models = models
        self._events = events
        self._counter = counter
        self._registry = registry
        self._settings = settings
        self._owner = owner
        self._stream_url = stream_url

    def validate(self, request: ChatInput) -> None:
        limits = self._settings.limits
        if not request.message.strip():
            raise InvalidInput("`message` must not be empty.")
        if len(request.message) > limits.max_message_chars:
            raise MessageTooLong(
                f"`message` has {len(request.message)} characters; the limit is {limits.max_message_chars}."
            )
        if "\x00" in request.message or (request.client_message_id and "\x00" in request.client_message_id):
            raise InvalidInput("Text must not contain NUL characters.")
        encoded = msgspec.json.encode(request.metadata)
        if len(encoded) > limits.max_metadata_bytes:
            raise InvalidInput(f"`metadata` is larger than {limits.max_metadata_bytes} bytes.")
        if b"\\u0000" in encoded:
            raise InvalidInput("`metadata` must not contain NUL characters.")
        # Who sent a message is recorded, never taken from the request (when the server had nothing to
        # record, no user agent and no peer address, a client's own `client` used to be kept).
        if "client" in request.metadata:
            raise InvalidInput("`metadata.client` is recorded by the server and cannot be set.")

    async def start_turn(self, user_id: str, request: ChatInput) -> ChatTurn:
        """Commit the user's message and a run, then start the run unless this is a replayed request."""
        self.validate(request)
        if not self._registry.accepting:
            raise Unavailable("Threadline is shutting down; retry on another instance.", retry_after_s=1)
        agent = await self._store.agent_for(user_id, request.thread_id, request.agent)
        model_name = agent.model or self._settings.model.default_model
        model = self._models.resolve(model_name)
        admitted = self.admission(user_id, thread_id=request.thread_id, agent=agent, question=request.message)
        async with admitted as ticket:
            turn = await self._store.begin_turn(
                NewTurn(
                    user_id=user_id,
                    thread_id=request.thread_id,
                    agent=agent.slug,
                    content=request.message,
                    client_message_id=request.client_message_id,
                    request_fingerprint=fingerprint(request),
                    metadata=request.metadata,
                    model=model_name,
                    provider=model.provider,
                    owner=self._owner,
                    client=request.client,
                    run_id=ticket.run_id,
                )
            )
            ticket.keep(not turn.replayed)
        if turn.replayed:
            return turn
        await self.launch(turn, ticket.bound(agent), model)
        return turn

    async def launch(self, turn: ChatTurn, agent: Agent, model: ChatModel) -> None:
        """Start a committed run: publish its `start` event, then call the model in a task."""
        ids = EventIds()
        run = turn.run
        start = StartEvent(
            run_id=run.id,
            thread_id=run.thread_id,
            message_id=run.assistant_message_id,
            stream_url=self._stream_url(run.id, run.user_id),
        )
        await self._events.append(run.id, ids.frame(start))
        self._metrics.run_started()
        self._registry.launch(run.id, self._execute(turn, agent, model, ids))

    def admission(
        self, user_id: str, *, thread_id: UUID | None, agent: Agent, question: str
    ) -> AbstractAsyncContextManager[Ticket]:
        """Admit a run (429 if a limit refuses it); commit the run with the ticket's run id and keep it."""
        if self._admission is None:
            return contextlib.nullcontext(Ticket(uuid.uuid4()))
        return self._admission.admit(user_id, thread_id=thread_id, agent=agent, question=question)

    def stop(self, run_id: UUID) -> bool:
        """Cancel a run this process owns (the client asked for it by leaving)."""
        return self._registry.stop(run_id, RunStatus.CANCELLED)

    async def _execute(self, turn: ChatTurn, agent: Agent, model: ChatModel, ids: EventIds) -> None:
        run = turn.run
        started = time.monotonic()
        stream = self._settings.stream
        reply = _Reply(interval_s=stream.flush_interval_s, every_tokens=stream.flush_tokens)
        status, error, ttft_ms = RunStatus.COMPLETED, None, None
        usage: Usage | None = None
        finish_reason: str | None = None
        prompt_estimate = 0
        cancelled = False
        try:
            await patiently(lambda: self._store.mark_running(run.id))
            history = await patiently(
                lambda: self._store.prompt_history(run.thread_id, self._settings.model.context_messages)
            )
            prompt = build_prompt(
                agent=agent,
                history=history,
                now=datetime.now(UTC),
                counter=self._counter,
                budget_tokens=self._settings.model.context_tokens,
                summary=turn.thread.context_summary,
                memory=await self._recall(run, history, ids),
            )
            prompt_estimate = prompt_tokens(prompt, self._counter)
            request = ModelRequest(
                model=run.model,
                messages=prompt,
                temperature=agent.temperature,
                max_output_tokens=agent.max_output_tokens,
            )
            async for chunk in model.stream(request):
                if chunk.text:
                    reply.add(chunk.text)
                    await self._events.append(run.id, ids.frame(TokenEvent(content=chunk.text)))
                    if ttft_ms is None:
                        ttft_ms = round((time.monotonic() - started) * 1000)
                        # After the token is out: readers get it without waiting for Postgres. Tried
                        # once: with Postgres unreachable, the run's end records the time instead.
                        with contextlib.suppress(Unavailable):
                            await self._store.mark_first_token(run.id)
                    if reply.due():
                        await self._store.save_partial(run.assistant_message_id, reply.text)
                usage = chunk.usage or usage
                finish_reason = chunk.finish_reason or finish_reason
        except ModelError as failure:
            status = RunStatus.TIMEOUT if failure.code in TIMEOUT_CODES else RunStatus.FAILED
            error = ErrorEvent(code=failure.code, message=failure.message)
        except asyncio.CancelledError:
            cancelled = True
            status = self._registry.stop_reason(run.id)
        except Exception:
            log.exception("run %s failed", run.id)
            status = RunStatus.FAILED
            error = ErrorEvent(code="internal_error", message="The run failed unexpectedly.")
        # Whatever happened above, the run ends saved, accounted for, and announced.
        with anyio.CancelScope(shield=True):
            text = reply.text
            if usage is None:
                usage = self._estimate(prompt_estimate if (text or ttft_ms) else 0, text)
            outcome = RunOutcome(
                run_id=run.id,
                status=status,
                content=text,
                usage=usage,
                model=run.model,
                provider=run.provider,
                error=format_error(error.code, error.message) if error else None,
                finish_reason=finish_reason or ("cancelled" if cancelled else None),
                ttft_ms=ttft_ms,
                latency_ms=round((time.monotonic() - started) * 1000),
            )
            try:
                await self._finish(turn, ids, outcome, error)
            finally:
                self._metrics.run_stopped()
        if cancelled:
            raise asyncio.CancelledError

    async def _recall(self, run: Run, history: list[Message], ids: EventIds) -> list[Recollection]:
        """The caller's relevant earlier messages, announced as the `sources` event before any token."""
        if self._memory is None:
            return []
        recalled = await self._memory.recall(run, history)
        if recalled:
            sources = SourcesEvent(sources=[item.source() for item in recalled])
            await self._events.append(run.id, ids.frame(sources))
        return recalled

    def _estimate(self, prompt: int, completion_text: str) -> Usage:
        completion = self._counter.count(completion_text)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            source="estimated",
        )

    async def _finish(
        self, turn: ChatTurn, ids: EventIds, outcome: RunOutcome, error: ErrorEvent | None
    ) -> None:
        run = turn.run
        try:
            if await patiently(lambda: self._store.finish_run(outcome)):
                self._metrics.run_recorded(outcome)
        except Exception:
            # The lease expires and the sweeper records the run as interrupted; readers still get `done`.
            log.exception("could not save the end of run %s", run.id)
        payload = UsagePayload.of(outcome.usage)
        closing: list[RunEvent] = [
            *([error] if error else []),
            UsageEvent(usage=payload, model=outcome.model),
            DoneEvent(run_id=run.id, thread_id=run.thread_id, status=outcome.status, usage=payload),
        ]
        for event in closing:
            await self._events.append(run.id, ids.frame(event))
        await self._events.finish(run.id)

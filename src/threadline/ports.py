"""The ports the services depend on; adapters and repositories implement them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import msgspec

from threadline.domain.events import Frame, Source
from threadline.domain.memory import (
    PendingMessage,
    RecallQuery,
    Recollection,
    SearchHit,
    SearchQuery,
    SummarySource,
)
from threadline.domain.models import (
    Agent,
    ChatTurn,
    Message,
    PromptMessage,
    Run,
    RunStatus,
    Thread,
    Usage,
)
from threadline.domain.usage import Admission, AdmissionRequest, BudgetStatus, Quota, UsageQuery, UsageReport


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: Sequence[PromptMessage]
    temperature: float | None = None
    max_output_tokens: int | None = None


class ModelChunk(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a model's reply: text, the provider's usage, or the finish reason."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


class ModelError(Exception):
    """The model call failed; `retryable` errors happened before any text was produced."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChatModel(Protocol):
    provider: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        """Yield the reply as it is produced; closing the iterator closes the upstream call."""
        ...


class ChatModels(Protocol):
    def resolve(self, model: str) -> ChatModel: ...


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class Batch(msgspec.Struct, frozen=True):
    """Frames read from an event log; `ended` once the run's final frame is among what was read."""

    frames: list[Frame]
    ended: bool


class EventLog(Protocol):
    """Where a run's frames live while clients read them, from any process."""

    async def append(self, run_id: UUID, frame: Frame) -> None: ...

    async def read(self, run_id: UUID, after: int, wait_s: float) -> Batch | None:
        """Frames with ids above `after`, waiting up to `wait_s` for one; None if the log has no such run."""
        ...

    async def finish(self, run_id: UUID) -> None:
        """The run ended: keep its frames for late readers for a while, then let them go."""
        ...


class RunAppend(msgspec.Struct, frozen=True):
    """A run's frames to append in order; `finished` then ends the run as `EventLog.finish` does."""

    run_id: UUID
    frames: list[Frame]
    finished: bool = False


class SharedEventLog(EventLog, Protocol):
    """An event log every process reads, which also takes many runs' frames at once."""

    async def append_runs(self, appends: Sequence[RunAppend]) -> list[bool]:
        """Each run's frames in order, all runs in one round trip. False for a run whose log is gone
        (nothing of it was appended); raises when the call as a whole failed."""
        ...


class NewTurn(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    thread_id: UUID | None
    agent: str | None
    content: str
    client_message_id: str | None
    request_fingerprint: str
    metadata: dict[str, Any]
    model: str
    provider: str
    owner: str
    # Who sent it (ip, user agent, device), recorded as `metadata.client`; not part of the fingerprint.
    client: dict[str, Any] = msgspec.field(default_factory=dict)
    # Chosen before the turn commits, so the run's admission (its slot and token reservation) can be
    # taken first and settled by the run's end.
    run_id: UUID = msgspec.field(default_factory=uuid.uuid4)


class RunOutcome(msgspec.Struct, frozen=True, kw_only=True):
    run_id: UUID
    status: RunStatus
    content: str
    usage: Usage
    model: str
    provider: str
    error: str | None
    finish_reason: str | None
    ttft_ms: int | None
    latency_ms: int


class OrphanedRun(msgspec.Struct, frozen=True, kw_only=True):
    """A live run whose owner stopped renewing its lease."""

    run_id: UUID
    model: str
    provider: str
    cancel_requested: bool
    content: str
    question: str


class RunLeases(Protocol):
    async def renew(self, owner: str, run_ids: list[UUID], lease_s: float) -> list[UUID]: ...

    async def orphaned(self, limit: int = 100) -> list[OrphanedRun]: ...

    async def request_cancel(self, user_id: str, run_id: UUID) -> Run | None: ...


class CancelSignal(Protocol):
    """Tells every process that a run should stop; the owner stops it."""

    async def publish(self, run_id: UUID) -> None: ...


class RunSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A run as Postgres knows it: enough to rebuild its stream when the event log has lost it."""

    run_id: UUID
    user_id: str
    thread_id: UUID
    message_id: UUID
    status: RunStatus
    model: str
    error: str | None
    content: str
    usage: Usage | None
    sources: list[Source]


@runtime_checkable
class ChatStore(Protocol):
    """Persistence of chat turns and their runs."""

    async def agent_for(self, user_id: str, thread_id: UUID | None, slug: str | None) -> Agent:
        """The agent a new turn runs with: the thread's, else the requested one, else the default."""
        ...

    async def begin_turn(self, turn: NewTurn) -> ChatTurn:
        """Commit the user message, the assistant placeholder and the run in one transaction."""
        ...

    async def prompt_history(self, thread_id: UUID, limit: int) -> list[Message]:
        """The newest `limit` finished messages of the thread, oldest first."""
        ...

    async def mark_running(self, run_id: UUID) -> None: ...

    async def mark_first_token(self, run_id: UUID) -> None: ...

    async def save_partial(self, message_id: UUID, content: str) -> None: ...

    async def finish_run(self, outcome: RunOutcome) -> bool:
        """End the run with its usage row, unless it already ended; True if this call ended it."""
        ...

    async def run(self, user_id: str, run_id: UUID) -> Run | None: ...

    async def snapshot(self, run_id: UUID) -> RunSnapshot | None: ...

    async def thread(self, user_id: str, thread_id: UUID) -> Thread | None: ...

    async def create_thread(self, user_id: str, thread_id: UUID, agent: str) -> Thread | None:
        """A new thread with the id a client chose; None if that id is already taken (by anyone)."""
        ...

    async def live_run(self, user_id: str, thread_id: UUID) -> UUID | None:
        """The run still producing a reply in the caller's thread, if any."""
        ...

    async def agents(self) -> list[Agent]:
        """Every agent, by slug."""
        ...


class Jobs(Protocol):
    """Background work, queued in Postgres next to the data it refers to."""

    async def enqueue(
        self,
        name: str,
        payload: dict[str, Any],
        *,
        connection: Any = None,
        dedupe_key: str | None = None,
    ) -> None:
        """Queue job `name`. With `connection` (an asyncpg connection inside a transaction) the job
        commits or rolls back with that transaction. A `dedupe_key` already queued is not queued twice."""
        ...


class Regeneration(msgspec.Struct, frozen=True, kw_only=True):
    """A new reply to a thread's last user message, optionally after replacing that message."""

    user_id: str
    thread_id: UUID
    content: str | None
    model: str
    provider: str
    owner: str
    client: dict[str, Any] = msgspec.field(default_factory=dict)
    # Chosen before it commits, so its admission can be taken first (see NewTurn.run_id).
    run_id: UUID = msgspec.field(default_factory=uuid.uuid4)


class Regenerations(Protocol):
    async def begin_regeneration(self, request: Regeneration) -> ChatTurn:
        """Supersede the last reply (and, with `content`, the last user message) and commit a new run."""
        ...


class TitleSource(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: UUID
    user_id: str
    agent_model: str | None
    first_message: str


class TitleStore(Protocol):
    async def title_source(self, thread_id: UUID) -> TitleSource | None:
        """What an untitled thread's title is made from; None once it has a title."""
        ...

    async def save_title(self, source: TitleSource, title: str, usage: TitleUsage | None) -> bool:
        """Set the title unless someone set one meanwhile; account for the model call's tokens."""
        ...


class TitleUsage(msgspec.Struct, frozen=True, kw_only=True):
    usage: Usage
    model: str
    provider: str
    latency_ms: int


class Admissions(Protocol):
    """Who may start a run: live-run slots and token budgets, decided atomically per user."""

    async def admit(self, request: AdmissionRequest) -> Admission:
        """Take a slot and reserve tokens for `request.run_id`, unless a limit refuses it."""
        ...

    async def release(self, run_id: UUID) -> None:
        """Give back an admission whose run never started (ending a run settles it instead)."""
        ...

    async def budget(self, user_id: str, daily: int | None, monthly: int | None) -> BudgetStatus:
        """The user's budgets (`daily`/`monthly` unless overridden), what is used and what is held."""
        ...

    async def overrides(self, user_id: str) -> tuple[int | None, int | None]:
        """The user's own daily and monthly budgets (`user_limits`); None where the default applies."""
        ...

    async def set_overrides(self, user_id: str, daily: int | None, monthly: int | None) -> None: ...


class RateLimiter(Protocol):
    """Counts requests in a window shared by every process; `rule` names a configured limit."""

    async def hit(self, rule: str, key: str) -> tuple[bool, Quota]:
        """Count one request; False if the window was already full (the request is not counted)."""
        ...

    async def blocked(self, rule: str, key: str) -> Quota | None:
        """The quota if `key` has no request left under `rule`, without counting one."""
        ...


class RunMetrics(Protocol):
    """Operational counters; each call is a few increments, never per token."""

    def run_started(self) -> None: ...

    def run_stopped(self) -> None:
        """A run task of this process ended (whether or not it saved its end)."""
        ...

    def run_recorded(self, outcome: RunOutcome) -> None:
        """A run's end was saved (by its owner or by the sweeper)."""
        ...

    def stream_opened(self) -> None: ...

    def stream_closed(self) -> None: ...


class NoMetrics:
    """`RunMetrics` that records nothing, for services built without an exporter."""

    def run_started(self) -> None:
        pass

    def run_stopped(self) -> None:
        pass

    def run_recorded(self, outcome: RunOutcome) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass


@runtime_checkable
class UsageReports(Protocol):
    async def report(self, query: UsageQuery) -> UsageReport: ...


class EmbeddingError(Exception):
    """The embedder could not embed; the job that asked is retried, a search falls back to full text."""


class Embedder(Protocol):
    """Turns texts into unit vectors of `dim` numbers; `name` is stored with every vector it makes."""

    name: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; raises `EmbeddingError`."""
        ...


class EmbeddingStore(Protocol):
    async def unembedded(self, message_ids: Sequence[UUID], embedder: str) -> list[PendingMessage]:
        """Those of `message_ids` that are finished and have no vector from `embedder`."""
        ...

    async def backlog(self, limit: int) -> list[PendingMessage]:
        """Finished messages without any vector (their job was lost), oldest first."""
        ...

    async def save(self, embedder: str, vectors: Sequence[tuple[UUID, list[float]]]) -> int:
        """Store (or replace) the messages' vectors; returns how many were stored."""
        ...


class MemoryStore(Protocol):
    async def recall(self, query: RecallQuery) -> list[Recollection]:
        """The caller's most relevant earlier messages, also recorded as the run's sources."""
        ...


class MessageSearch(Protocol):
    async def search(self, query: SearchQuery) -> list[SearchHit]:
        """The caller's messages by full text and by vector, fused by reciprocal rank."""
        ...


class SummaryStore(Protocol):
    async def summary_source(self, thread_id: UUID, window: int) -> SummarySource | None:
        """The thread's summary and the messages that left the recent `window` since; None if none did."""
        ...

    async def save_summary(
        self, source: SummarySource, summary: str, through_seq: int, usage: TitleUsage | None
    ) -> bool:
        """Keep `summary` unless a newer one was saved meanwhile; account for the model call's tokens."""
        ...

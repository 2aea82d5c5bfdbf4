"""Wire Structs: what clients send and receive. Unknown fields are refused, not ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from threadline.domain.events import Source, UsagePayload
from threadline.domain.models import MessageStatus, Role, RunStatus

ClientMessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
AgentSlug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    message: str
    thread_id: UUID | None = None
    agent: AgentSlug | None = None
    client_message_id: ClientMessageId | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class RunError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class ChatResponse(msgspec.Struct, frozen=True, kw_only=True):
    response: str
    thread_id: UUID
    run_id: UUID
    message_id: UUID
    status: RunStatus
    usage: UsagePayload | None
    error: RunError | None = None


class HistoryMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    role: Role
    content: str
    status: MessageStatus | None
    timestamp: datetime
    seq: int
    run_id: UUID | None


class HistoryResponse(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: UUID | None
    message_count: int
    messages: list[HistoryMessage]


class ClearHistoryResponse(msgspec.Struct, frozen=True, kw_only=True):
    success: bool
    message: str
    thread_id: UUID | None


class SessionsResponse(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    thread_id: UUID | None
    total_messages: int
    total_tokens_used: int
    session_start: datetime | None
    last_activity: datetime | None
    total_threads: int
    active_threads: int


class RunResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    thread_id: UUID
    status: RunStatus
    model: str
    provider: str
    user_message_id: UUID
    assistant_message_id: UUID
    content: str
    error: str | None
    created_at: datetime
    first_token_at: datetime | None
    finished_at: datetime | None
    stream_url: str
    # The earlier messages this run recalled into its context, with their similarity scores.
    sources: list[Source] = msgspec.field(default_factory=list)
    # What the run used, once it has ended: the provider's numbers or Threadline's estimate.
    usage: UsagePayload | None = None


class HealthResponse(msgspec.Struct, frozen=True):
    status: str


class ReadyResponse(msgspec.Struct, frozen=True):
    status: str
    postgres: bool
    redis: bool

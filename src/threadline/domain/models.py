"""Threads, messages, runs and usage as Threadline's layers pass them around."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec


class ThreadStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"
    RESOLVED = "resolved"
    ARCHIVED = "archived"
    ABANDONED = "abandoned"


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class MessageStatus(enum.StrEnum):
    STREAMING = "streaming"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"

    @property
    def terminal(self) -> bool:
        return self not in {RunStatus.PENDING, RunStatus.RUNNING}

    @property
    def message_status(self) -> MessageStatus:
        """The status the run's assistant message takes when the run ends this way."""
        return {
            RunStatus.COMPLETED: MessageStatus.COMPLETED,
            RunStatus.FAILED: MessageStatus.FAILED,
            RunStatus.TIMEOUT: MessageStatus.FAILED,
            RunStatus.CANCELLED: MessageStatus.CANCELLED,
            RunStatus.INTERRUPTED: MessageStatus.INTERRUPTED,
        }.get(self, MessageStatus.STREAMING)


UsageSource = Literal["measured", "estimated"]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    source: UsageSource = "estimated"


class Agent(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    name: str
    system_prompt: str
    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None


class Thread(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    user_id: str
    agent: str
    title: str | None
    status: ThreadStatus
    metadata: dict[str, Any]
    context_summary: str | None
    message_count: int
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    thread_id: UUID
    seq: int
    role: Role
    content: str
    status: MessageStatus | None
    run_id: UUID | None
    metadata: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None = None
    error: str | None = None
    # Set when a regenerated reply or an edited question replaced this message; it stays as a version.
    superseded_at: datetime | None = None


class Run(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    thread_id: UUID
    user_id: str
    status: RunStatus
    model: str
    provider: str
    user_message_id: UUID
    assistant_message_id: UUID
    created_at: datetime
    error: str | None = None
    first_token_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None


class ChatTurn(msgspec.Struct, frozen=True, kw_only=True):
    """What a committed chat request produced: the run to follow, and whether it is a replay."""

    run: Run
    thread: Thread
    replayed: bool = False


class PromptMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str

"""Wire Structs of the session routes: threads, messages, agents, stats. Unknown fields are refused."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from threadline.domain.models import Message, MessageStatus, Role, Thread, ThreadStatus
from threadline.http.schemas import AgentSlug

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
AgentName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
SystemPrompt = Annotated[str, msgspec.Meta(max_length=32_000)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
IdleMinutes = Annotated[int, msgspec.Meta(ge=1, le=525_600)]


class Pagination(msgspec.Struct, frozen=True, kw_only=True):
    page: int
    per_page: int
    total_items: int
    total_pages: int
    has_next: bool
    has_prev: bool

    @classmethod
    def of(cls, page: int, per_page: int, total_items: int) -> Pagination:
        total_pages = math.ceil(total_items / per_page)
        return cls(
            page=page,
            per_page=per_page,
            total_items=total_items,
            total_pages=total_pages,
            has_next=page < total_pages,
            has_prev=page > 1,
        )


class ThreadOut(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    title: str | None
    status: ThreadStatus
    agent: str
    message_count: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime

    @classmethod
    def of(cls, thread: Thread) -> ThreadOut:
        return cls(
            id=thread.id,
            title=thread.title,
            status=thread.status,
            agent=thread.agent,
            message_count=thread.message_count,
            metadata=thread.metadata,
            created_at=thread.created_at,
            updated_at=thread.updated_at,
            last_activity_at=thread.last_activity_at,
        )


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    seq: int
    role: Role
    content: str
    status: MessageStatus | None
    run_id: UUID | None
    metadata: dict[str, Any]
    error: str | None
    created_at: datetime
    completed_at: datetime | None
    superseded_at: datetime | None

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls(
            id=message.id,
            seq=message.seq,
            role=message.role,
            content=message.content,
            status=message.status,
            run_id=message.run_id,
            metadata=message.metadata,
            error=message.error,
            created_at=message.created_at,
            completed_at=message.completed_at,
            superseded_at=message.superseded_at,
        )


class ThreadUsageOut(msgspec.Struct, frozen=True, kw_only=True):
    runs: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class ThreadDetailOut(ThreadOut, frozen=True, kw_only=True):
    context_summary: str | None
    total_messages: int
    last_activity: datetime
    last_message: MessageOut | None
    usage: ThreadUsageOut


class ThreadPage(msgspec.Struct, frozen=True, kw_only=True):
    threads: list[ThreadOut]
    pagination: Pagination


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    thread_info: ThreadOut
    messages: list[MessageOut]
    pagination: Pagination


class ThreadExport(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    exported_at: datetime
    thread: ThreadOut
    messages: list[MessageOut]


class CreateThread(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    title: Title | None = None
    agent: AgentSlug | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateThread(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only the fields sent change; `title: null` clears the title; `metadata` is a merge patch."""

    title: Title | UnsetType | None = UNSET
    status: ThreadStatus | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class Regenerate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Empty: answer the last question again. `message`: replace the last question, then answer it."""

    message: str | None = None


class CleanupRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_idle_minutes: IdleMinutes | None = None


class CleanupResponse(msgspec.Struct, frozen=True, kw_only=True):
    max_idle_minutes: int
    abandoned: int
    thread_ids: list[UUID]


class AgentOut(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    name: str
    system_prompt: str
    model: str | None
    temperature: float | None
    max_output_tokens: int | None
    is_default: bool
    created_at: datetime
    updated_at: datetime


class CreateAgent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slug: AgentSlug
    name: AgentName
    system_prompt: SystemPrompt
    model: ModelName | None = None
    temperature: Temperature | None = None
    max_output_tokens: MaxTokens | None = None
    is_default: bool = False


class UpdateAgent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only the fields sent change; `model`, `temperature` and `max_output_tokens` may be null."""

    name: AgentName | UnsetType = UNSET
    system_prompt: SystemPrompt | UnsetType = UNSET
    model: ModelName | UnsetType | None = UNSET
    temperature: Temperature | UnsetType | None = UNSET
    max_output_tokens: MaxTokens | UnsetType | None = UNSET
    is_default: bool | UnsetType = UNSET

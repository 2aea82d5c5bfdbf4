"""`GET /search`: hybrid full-text and vector search over the caller's own messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.security.jwt import Token

from threadline.domain.errors import NotFound
from threadline.domain.memory import SearchHit
from threadline.domain.models import Role
from threadline.http.auth import Principal
from threadline.ports import ChatStore
from threadline.service.search import SearchService

AuthRequest = Request[Principal, Token, Any]
Query = Annotated[str, QueryParameter(description='Words to find; websearch syntax: "a phrase", or, -not')]
Limit = Annotated[int, QueryParameter(description="At most this many results (1 to 50)")]


class SearchResult(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    thread_id: UUID
    role: Role
    seq: int
    content: str
    snippet: str
    timestamp: datetime
    score: float
    text_rank: int | None
    vector_rank: int | None
    similarity: float | None

    @classmethod
    def of(cls, hit: SearchHit) -> SearchResult:
        return cls(
            message_id=hit.message_id,
            thread_id=hit.thread_id,
            role=hit.role,
            seq=hit.seq,
            content=hit.content,
            snippet=hit.snippet,
            timestamp=hit.created_at,
            score=round(hit.score, 6),
            text_rank=hit.text_rank,
            vector_rank=hit.vector_rank,
            similarity=None if hit.similarity is None else round(hit.similarity, 4),
        )


class SearchResponse(msgspec.Struct, frozen=True, kw_only=True):
    query: str
    thread_id: UUID | None
    results: list[SearchResult]


class SearchController(Controller):
    path = "/search"
    tags = ["search"]

    @get(
        summary="Search your messages by words and meaning",
        description="Full text (English stemming, websearch syntax) and vector similarity over the "
        "caller's own messages, fused by reciprocal rank (k = 60). `snippet` is HTML-safe: the text is "
        "escaped and the matches are wrapped in `<mark>`.",
    )
    async def search(
        self,
        request: AuthRequest,
        q: FromQuery[Query],
        search: NamedDependency[SearchService],
        chat_store: NamedDependency[ChatStore],
        thread_id: FromQuery[UUID | None] = None,
        limit: FromQuery[Limit] = 20,
    ) -> SearchResponse:
        user_id = request.user.user_id
        if thread_id is not None and await chat_store.thread(user_id, thread_id) is None:
            raise NotFound("Thread not found.")
        hits = await search.search(user_id, q, thread_id=thread_id, limit=limit)
        return SearchResponse(query=q, thread_id=thread_id, results=[SearchResult.of(hit) for hit in hits])

"""Memory as the layers pass it around: what a run recalls, what a search finds, what a summary covers."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from threadline.domain.events import Source
from threadline.domain.models import Message, Role

# A source's snippet in the `sources` event and in `runs.retrieved`: enough to recognise the message.
SNIPPET_CHARS = 200
# A run's memory reaches the model as a system message starting with this line (the echo model quotes it).
MEMORY_HEADER = "Relevant earlier messages:"


class Recollection(msgspec.Struct, frozen=True, kw_only=True):
    """An earlier message of the caller, retrieved into a run's context."""

    message_id: UUID
    thread_id: UUID
    role: Role
    content: str
    created_at: datetime
    score: float

    def source(self) -> Source:
        return Source(
            message_id=self.message_id,
            thread_id=self.thread_id,
            score=round(self.score, 4),
            snippet=snippet(self.content),
        )


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """`text` on one line, cut at a word boundary near `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut + "…"


class RecallQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which earlier messages a run may recall, and how they are ranked."""

    user_id: str
    thread_id: UUID
    run_id: UUID
    vector: list[float]
    embedder: str
    # This thread's messages from `window_seq` on are in the prompt already (the recent window).
    window_seq: int
    top_k: int
    other_threads: bool
    min_score: float
    # Added to the score of this thread's messages when ranking: the thread comes first among equals.
    thread_boost: float
    ef_search: int


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    text: str
    # None when the embedder could not answer: the search is then full-text only.
    vector: list[float] | None
    embedder: str
    thread_id: UUID | None
    limit: int
    # How many hits each arm (full-text, vector) contributes to the fusion.
    candidates: int
    min_score: float
    ef_search: int


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    thread_id: UUID
    role: Role
    seq: int
    content: str
    # The text around the matches, HTML-escaped, matches wrapped in <mark>…</mark>.
    snippet: str
    created_at: datetime
    # Reciprocal-rank fusion: the sum of 1 / (60 + rank) over the arms that found the message.
    score: float
    text_rank: int | None
    vector_rank: int | None
    similarity: float | None


class PendingMessage(msgspec.Struct, frozen=True):
    """A message that has no vector from the current embedder yet."""

    id: UUID
    content: str


class SummarySource(msgspec.Struct, frozen=True, kw_only=True):
    """What a thread's rolling summary is updated from: the old summary and what left the window since."""

    thread_id: UUID
    user_id: str
    agent_model: str | None
    summary: str | None
    through_seq: int
    messages: list[Message]

"""The usage row of a model call that is no run: a thread's title or its summary, priced like a run."""

from __future__ import annotations

import uuid
from typing import Literal
from uuid import UUID

from threadline.db.database import Connection
from threadline.db.sql import load
from threadline.domain.pricing import PriceTable
from threadline.ports import TitleUsage

CALL_USAGE = load("call_usage.sql")
Purpose = Literal["title", "summary"]


async def record_call_usage(
    connection: Connection, *, purpose: Purpose, thread_id: UUID, call: TitleUsage, prices: PriceTable
) -> None:
    """One usage row for the call and its tokens and cost in the user's rollup, in `connection`'s
    transaction: the tokens were spent whether or not what they wrote is still wanted."""
    tokens = call.usage
    await connection.execute(
        CALL_USAGE, uuid.uuid4(), thread_id, purpose, call.model, call.provider,
        tokens.prompt_tokens, tokens.completion_tokens, tokens.cached_tokens, tokens.reasoning_tokens,
        tokens.total_tokens, tokens.source, call.latency_ms, prices.cost(call.model, tokens), prices.version,
    )  # fmt: skip

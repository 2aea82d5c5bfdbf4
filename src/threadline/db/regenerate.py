"""Regenerating a reply, or editing the last question first: the old versions stay, superseded."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from threadline.db.chat import (
    INSERT_MESSAGE,
    INSERT_RUN,
    LIVE_RUN_IN_THREAD,
    REOPEN_THREAD,
    THREAD_COLUMNS,
    THREAD_FOR_UPDATE,
)
from threadline.db.database import Database
from threadline.domain.errors import NotFound, NothingToRegenerate, RunInProgress
from threadline.domain.lifecycle import status_for_message
from threadline.domain.models import ChatTurn, Run, Thread
from threadline.ports import Regeneration

LAST_QUESTION = """
    SELECT id, seq FROM messages
    WHERE thread_id = $1 AND role = 'user' AND superseded_at IS NULL
    ORDER BY seq DESC LIMIT 1
"""
# Everything from `seq` on that is current becomes an earlier version; the newest such reply is
# what the new one replaces.
SUPERSEDE_FROM = """
    UPDATE messages SET superseded_at = now()
    WHERE thread_id = $1 AND seq >= $2 AND superseded_at IS NULL
    RETURNING id, role, seq
"""
# $2 new messages, $3 superseded ones: message_count stays the number of current messages.
ALLOCATE = f"""
    UPDATE threads
    SET next_seq = next_seq + $2, message_count = message_count + $2 - $3,
        last_activity_at = now(), updated_at = now()
    WHERE id = $1
    RETURNING next_seq - $2 AS seq, {THREAD_COLUMNS}
"""


class PostgresRegenerations:
    """The `Regenerations` port over asyncpg."""

    def __init__(self, database: Database, *, lease_s: float) -> None:
        self._db = database
        self._lease_s = lease_s

    async def begin_regeneration(self, request: Regeneration) -> ChatTurn:
        async with self._db.transaction() as connection:
            record = await connection.fetchrow(THREAD_FOR_UPDATE, request.thread_id, request.user_id)
            if record is None:
                raise NotFound("Thread not found.")
            thread = msgspec.convert(dict(record), Thread)
            if status_for_message(thread.status, thread.id) is not thread.status:
                await connection.execute(REOPEN_THREAD, thread.id)
            if (live := await connection.fetchval(LIVE_RUN_IN_THREAD, thread.id)) is not None:
                raise RunInProgress("A reply is still being generated in this thread.", run_id=live)
            question = await connection.fetchrow(LAST_QUESTION, thread.id)
            if question is None:
                raise NothingToRegenerate("This thread has no message to answer again.")
            edit = request.content is not None
            superseded = await connection.fetch(
                SUPERSEDE_FROM, thread.id, question["seq"] + (0 if edit else 1)
            )
            replies = [row for row in superseded if row["role"] == "assistant"]
            row = await connection.fetchrow(ALLOCATE, thread.id, 2 if edit else 1, len(superseded))
            assert row is not None
            seq: int = row["seq"]
            thread = msgspec.convert({k: v for k, v in row.items() if k != "seq"}, Thread)
            run_id, user_message_id = request.run_id, question["id"]
            if request.content is not None:
                user_message_id = uuid.uuid4()
                metadata: dict[str, Any] = {"edited_from": str(question["id"])}
                if request.client:
                    metadata["client"] = request.client
                await connection.execute(
                    INSERT_MESSAGE, user_message_id, thread.id, request.user_id, seq, "user",
                    request.content, None, run_id, None, None, metadata,
                )  # fmt: skip
                seq += 1
            assistant_message_id = uuid.uuid4()
            replaces = {"replaces": str(max(replies, key=lambda r: r["seq"])["id"])} if replies else {}
            await connection.execute(
                INSERT_MESSAGE, assistant_message_id, thread.id, request.user_id, seq, "assistant", "",
                "streaming", run_id, None, None, replaces,
            )  # fmt: skip
            run_record = await connection.fetchrow(
                INSERT_RUN, run_id, thread.id, request.user_id, request.model, request.provider,
                user_message_id, assistant_message_id, "continue", request.owner, self._lease_s,
            )  # fmt: skip
        assert run_record is not None
        run = msgspec.convert(dict(run_record), Run)
        return ChatTurn(run=run, thread=thread)

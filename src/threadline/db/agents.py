"""Agents (personas) as admins manage them: exactly one default, and none deleted while in use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from threadline.db.database import Connection, Database
from threadline.domain.errors import AgentInUse, Conflict, NotFound

AGENT_COLUMNS = (
    "slug, name, system_prompt, model, temperature, max_output_tokens, is_default, created_at, updated_at"
)
LIST_AGENTS = f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY is_default DESC, slug"
AGENT = f"SELECT {AGENT_COLUMNS} FROM agents WHERE slug = $1"
AGENT_FOR_UPDATE = f"{AGENT} FOR UPDATE"
CLEAR_DEFAULT = "UPDATE agents SET is_default = false, updated_at = now() WHERE is_default AND slug <> $1"
INSERT_AGENT = f"""
    INSERT INTO agents (slug, name, system_prompt, model, temperature, max_output_tokens, is_default)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING {AGENT_COLUMNS}
"""
UPDATE_AGENT = f"""
    UPDATE agents SET name = $2, system_prompt = $3, model = $4, temperature = $5,
                      max_output_tokens = $6, is_default = $7, updated_at = now()
    WHERE slug = $1
    RETURNING {AGENT_COLUMNS}
"""
THREADS_USING = "SELECT count(*) FROM threads WHERE agent = $1"
DELETE_AGENT = "DELETE FROM agents WHERE slug = $1"


class AgentRecord(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    name: str
    system_prompt: str
    model: str | None
    temperature: float | None
    max_output_tokens: int | None
    is_default: bool
    created_at: datetime
    updated_at: datetime


class AgentFields(msgspec.Struct, frozen=True, kw_only=True):
    """Everything about an agent but its slug: what a create sets, and a change after merging."""

    name: str
    system_prompt: str
    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    is_default: bool = False


def _agent(record: asyncpg.Record | None) -> AgentRecord | None:
    return None if record is None else msgspec.convert(dict(record), AgentRecord)


class PostgresAgents:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def all(self) -> list[AgentRecord]:
        async with self._db.connection() as connection:
            rows = await connection.fetch(LIST_AGENTS)
        return [msgspec.convert(dict(row), AgentRecord) for row in rows]

    async def get(self, slug: str) -> AgentRecord:
        async with self._db.connection() as connection:
            return self._found(_agent(await connection.fetchrow(AGENT, slug)))

    async def create(self, slug: str, fields: AgentFields) -> AgentRecord:
        try:
            async with self._db.transaction() as connection:
                if fields.is_default:
                    await connection.execute(CLEAR_DEFAULT, slug)
                record = await connection.fetchrow(INSERT_AGENT, slug, *self._values(fields))
        except asyncpg.UniqueViolationError:
            raise Conflict(f"An agent {slug!r} exists already.") from None
        created = _agent(record)
        assert created is not None
        return created

    async def change(
        self, slug: str, changes: dict[str, Any], check: Callable[[AgentFields], AgentFields]
    ) -> AgentRecord:
        """Apply the fields in `changes` under the row's lock, after `check` accepted the result."""
        async with self._db.transaction() as connection:
            current = self._found(_agent(await connection.fetchrow(AGENT_FOR_UPDATE, slug)))
            merged = {**msgspec.structs.asdict(current), **changes}
            fields = check(
                msgspec.convert({k: merged[k] for k in AgentFields.__struct_fields__}, AgentFields)
            )
            if current.is_default and not fields.is_default:
                raise Conflict("One agent is always the default: make another agent the default instead.")
            if fields.is_default and not current.is_default:
                await connection.execute(CLEAR_DEFAULT, slug)
            return self._found(_agent(await connection.fetchrow(UPDATE_AGENT, slug, *self._values(fields))))

    async def delete(self, slug: str) -> None:
        try:
            async with self._db.transaction() as connection:
                current = self._found(_agent(await connection.fetchrow(AGENT_FOR_UPDATE, slug)))
                if current.is_default:
                    raise AgentInUse("The default agent cannot be deleted; make another the default first.")
                await self._refuse_if_used(connection, slug)
                await connection.execute(DELETE_AGENT, slug)
        except asyncpg.ForeignKeyViolationError:
            # A thread was bound to it between the check and the delete.
            raise AgentInUse(f"Threads are bound to agent {slug!r}; it cannot be deleted.") from None

    @staticmethod
    async def _refuse_if_used(connection: Connection, slug: str) -> None:
        # Threads keep the agent they were bound to; deleting it would orphan their runs' settings.
        if used := await connection.fetchval(THREADS_USING, slug):
            raise AgentInUse(f"{used} thread(s) are bound to agent {slug!r}; it cannot be deleted.")

    @staticmethod
    def _values(fields: AgentFields) -> tuple[object, ...]:
        return (fields.name, fields.system_prompt, fields.model, fields.temperature,
                fields.max_output_tokens, fields.is_default)  # fmt: skip

    @staticmethod
    def _found(agent: AgentRecord | None) -> AgentRecord:
        if agent is None:
            raise NotFound("Agent not found.")
        return agent

"""`/agents`: the personas threads are bound to, managed by admins (everyone else gets 403)."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from threadline.db.agents import AgentFields, AgentRecord
from threadline.domain.errors import InvalidInput
from threadline.http.auth import admin_only
from threadline.http.session_dependencies import SESSION_DEPENDENCIES
from threadline.http.session_schemas import AgentOut, CreateAgent, UpdateAgent
from threadline.sessions import Sessions


def _out(agent: AgentRecord) -> AgentOut:
    return msgspec.convert(msgspec.structs.asdict(agent), AgentOut)


def checked(fields: AgentFields, sessions: Sessions) -> AgentFields:
    """Text Postgres can store, and a model some adapter serves, before anything is written."""
    for name in ("name", "system_prompt", "model"):
        value = getattr(fields, name)
        if value is not None and "\x00" in value:
            raise InvalidInput(f"`{name}` must not contain NUL characters.")
    if not fields.name.strip():
        raise InvalidInput("`name` must not be blank.")
    if fields.model is not None:
        sessions.models.resolve(fields.model)
    return fields


class AgentController(Controller):
    path = "/agents"
    tags = ["agents"]
    guards = [admin_only]
    dependencies = SESSION_DEPENDENCIES

    @get("/", summary="Every agent, the default first")
    async def list_agents(self, sessions: NamedDependency[Sessions]) -> list[AgentOut]:
        return [_out(agent) for agent in await sessions.agents.all()]

    @post("/", status_code=201, summary="Create an agent")
    async def create(self, data: JSONBody[CreateAgent], sessions: NamedDependency[Sessions]) -> AgentOut:
        fields = msgspec.convert(
            {k: v for k, v in msgspec.structs.asdict(data).items() if k != "slug"}, AgentFields
        )
        return _out(await sessions.agents.create(data.slug, checked(fields, sessions)))

    @get("/{slug:str}", summary="One agent")
    async def read(self, slug: FromPath[str], sessions: NamedDependency[Sessions]) -> AgentOut:
        return _out(await sessions.agents.get(slug))

    @patch("/{slug:str}", summary="Change an agent; threads bound to it use the change from their next run")
    async def change(
        self, slug: FromPath[str], data: JSONBody[UpdateAgent], sessions: NamedDependency[Sessions]
    ) -> AgentOut:
        sent = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        return _out(await sessions.agents.change(slug, sent, lambda fields: checked(fields, sessions)))

    @delete("/{slug:str}", status_code=204, summary="Delete an agent no thread is bound to")
    async def remove(self, slug: FromPath[str], sessions: NamedDependency[Sessions]) -> None:
        await sessions.agents.delete(slug)

"""Security cases: another user's ids, mass assignment, CORS from any origin, oversized tokens.

One live Threadline process with CORS on for one origin, with credentials: the configuration in which
reflecting an arbitrary origin would hurt most. The cases walk the live OpenAPI schema, so a new route
is probed without editing this file, and a route whose ids or body this file cannot place fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import FULL, Figures, app_env, scale
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.openapi import body_fields, concrete, fill, operations
from tests.support.processes import Server
from threadline.http.auth import STREAM_AUDIENCE, issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ALLOWED = "https://app.example.com"
EVIL = "https://evil.example"
WRITES = ("POST", "PUT", "PATCH")
UI_MESSAGE = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "{text}"}]}


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("security")
    env = app_env(
        root / "S", database_url, redis_url, upstream,
        THREADLINE_CORS_ORIGINS=ALLOWED, THREADLINE_CORS_ALLOW_CREDENTIALS="true",
    )  # fmt: skip
    process = Server("S", env=env, log_dir=root)
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        try:
            process.terminate()
        except RuntimeError:
            process.kill()


@pytest.fixture(scope="module")
def schema(server: Server) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{server.url}/schema/openapi.json", timeout=10).json()
    return document


@pytest.fixture
async def live(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        yield client


def bearer(user: str, *, admin: bool = False, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user, admin=admin)}", **extra}


def someone(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:10]}"


def is_problem(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("application/problem+json")


# ---------------------------------------------------------------------------------------------------
# (a) Another user's ids

# Where operations take ids, and what kind each is. An id found in the schema that is in none of these
# fails the case: a new route must say what its ids are.
PATH_IDS = {"thread_id": "thread", "run_id": "run", "chat_id": "thread", "slug": "agent", "user_id": "user"}
OTHER_IDS = {
    ("query", "thread_id"): "thread",
    ("query", "user_id"): "user",
    ("header", "X-Thread-Id"): "thread",
    ("body", "thread_id"): "thread",
}
# Positions in a stream and idempotency keys: not ids of anything a user owns.
NOT_IDS = {("header", "Last-Event-ID"), ("query", "last_event_id"), ("body", "client_message_id")}
# The AI SDK's chat id is a body field named `id`; a UUID names the thread itself.
BODY_IDS = {("POST", "/ai-sdk/chat"): {"id": "thread"}}
# Routes that make the thread when no one has its id: a missing id is not an error there, by design.
CREATES_WHEN_MISSING = {("POST", "/v1/chat/completions"), ("POST", "/ai-sdk/chat")}
# The AI SDK's resume answers 204 "nothing is running in your chat of that id" to both.
NOT_404 = {("GET", "/ai-sdk/chat/{chat_id}/stream"): 204}
ADMIN_KINDS = {"agent", "user"}
# How each operation is called; `{thread}`, `{run}`, `{agent}` and `{user}` are the owner's ids.
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/threads/{thread_id}"): {
        "json": {"title": "taken", "status": "archived", "metadata": {"x": 1}}
    },
    ("POST", "/threads/{thread_id}/regenerate"): {"json": {"message": "edited by someone else"}},
    ("GET", "/threads/{thread_id}/export"): {"params": {"format": "json"}},
    ("POST", "/chat"): {"json": {"message": "hello", "thread_id": "{thread}"}},
    ("POST", "/chat/stream"): {"json": {"message": "hello", "thread_id": "{thread}"}},
    ("GET", "/chat/history"): {"params": {"thread_id": "{thread}"}},
    ("DELETE", "/chat/history"): {"params": {"thread_id": "{thread}"}},
    ("GET", "/search"): {"params": {"q": "secret", "thread_id": "{thread}"}},
    ("POST", "/v1/chat/completions"): {
        "headers": {"X-Thread-Id": "{thread}"},
        "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
    },
    ("POST", "/ai-sdk/chat"): {"json": {"id": "{thread}", "messages": [UI_MESSAGE]}},
    ("PATCH", "/agents/{slug}"): {"json": {"name": "taken"}},
    ("PUT", "/admin/users/{user_id}/limits"): {"json": {"daily_token_budget": 1}},
    ("GET", "/admin/usage"): {"params": {"user_id": "{user}"}},
}
OWNED_BY = {
    "threads": "SELECT * FROM threads WHERE user_id = $1 ORDER BY id",
    "messages": "SELECT * FROM messages WHERE user_id = $1 ORDER BY thread_id, seq",
    "runs": "SELECT * FROM runs WHERE user_id = $1 ORDER BY id",
    "usage_events": "SELECT * FROM usage_events WHERE user_id = $1 ORDER BY id",
    "user_usage": "SELECT * FROM user_usage WHERE user_id = $1",
    "user_limits": "SELECT * FROM user_limits WHERE user_id = $1",
}
AGENTS = "SELECT * FROM agents WHERE slug = ANY($1) ORDER BY slug"


async def rows_of(db: asyncpg.Pool, user: str) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(row) for row in await db.fetch(sql, user)] for table, sql in OWNED_BY.items()}


def id_kind(method: str, path: str, where: str, name: str) -> str | None:
    if where == "path":
        return PATH_IDS.get(name)
    return BODY_IDS.get((method, path), {}).get(name) or OTHER_IDS.get((where, name))


def ids_taken(document: Mapping[str, Any]) -> tuple[dict[tuple[str, str], set[str]], list[str]]:
    """The kinds of id each operation takes, and the id-like inputs nobody placed."""
    taken: dict[tuple[str, str], set[str]] = {}
    unplaced = []
    for method, path, operation in operations(document):
        inputs = [(p["in"], p["name"]) for p in operation.get("parameters", [])]
        inputs += [("body", name) for name in body_fields(document, operation)]
        for where, name in inputs:
            kind = id_kind(method, path, where, name)
            if kind is not None:
                taken.setdefault((method, path), set()).add(kind)
            elif (where == "path" or name.lower().endswith(("_id", "-id"))) and (where, name) not in NOT_IDS:
                unplaced.append(f"{method} {path}: {where} {name}")
    return taken, unplaced


async def call(
    client: httpx.AsyncClient, method: str, path: str, user: str, ids: Mapping[str, str]
) -> httpx.Response:
    spec = fill(REQUESTS.get((method, path), {}), {**ids, "text": "hello"})
    url = concrete(path, lambda name: ids[PATH_IDS[name]])
    headers = {**bearer(user), **spec.get("headers", {})}
    return await client.request(
        method, url, params=spec.get("params"), json=spec.get("json"), headers=headers
    )


async def owner_of_everything(client: httpx.AsyncClient) -> dict[str, str]:
    """A user with a titled thread, a completed run with usage, budgets, and an agent of the case's own."""
    owner, slug = someone("owner"), f"sec-{uuid.uuid4().hex[:8]}"
    made = await client.post("/threads", json={"title": "private"}, headers=bearer(owner))
    asked = {"message": "my secret", "thread_id": made.json()["id"]}
    reply = await client.post("/chat", json=asked, headers=bearer(owner))
    agent = {"slug": slug, "name": "Owner's", "system_prompt": "Be kind."}
    created = await client.post("/agents", json=agent, headers=bearer(owner, admin=True))
    budget = {"daily_token_budget": 1_000_000}
    limits = await client.put(f"/admin/users/{owner}/limits", json=budget, headers=bearer(owner, admin=True))
    assert [r.status_code for r in (made, reply, created, limits)] == [201, 200, 201, 200], reply.text
    return {"thread": made.json()["id"], "run": reply.json()["run_id"], "agent": slug, "user": owner}


def missing_ids() -> dict[str, str]:
    return {"thread": str(uuid.uuid4()), "run": str(uuid.uuid4()), "agent": someone("no-such"),
            "user": someone("nobody")}  # fmt: skip


def answer_differs(operation: tuple[str, str], kinds: set[str], taken: httpx.Response,
                   missing: httpx.Response | None) -> str | None:  # fmt: skip
    """Why the answer to another user's ids is wrong, if it is."""
    expected = NOT_404.get(operation, 403 if kinds <= ADMIN_KINDS else 404)
    if missing is not None and (taken.status_code, taken.headers.get("content-type"), taken.content) != (
        missing.status_code, missing.headers.get("content-type"), missing.content,
    ):  # fmt: skip
        return (
            f"{taken.status_code} {taken.text[:80]} vs {missing.status_code} {missing.text[:80]} when missing"
        )
    if taken.status_code != expected or (expected >= 400 and not is_problem(taken)):
        return f"{taken.status_code} {taken.text[:120]}"
    return "the owner's text leaked" if "my secret" in taken.text else None


@pytest.mark.case("cross-user ids")
async def test_another_users_ids_answer_like_missing_ones_everywhere(
    live: httpx.AsyncClient, schema: dict[str, Any], db: asyncpg.Pool, upstream: FakeOpenAI, figures: Figures
) -> None:
    taking_ids, unplaced = ids_taken(schema)
    assert not unplaced, f"ids this case cannot place (PATH_IDS, OTHER_IDS, NOT_IDS): {unplaced}"
    upstream.behaviour = Behaviour(reply="my secret reply")
    owners = [await owner_of_everything(live) for _ in range(scale(1, 10))]
    before = {ids["user"]: await rows_of(db, ids["user"]) for ids in owners}
    agents_before = await db.fetch(AGENTS, [ids["agent"] for ids in owners])
    calls, sent, wrong, intruders = len(upstream.requests), 0, [], []
    for ids in owners:
        intruders.append(intruder := someone("intruder"))
        for (method, path), kinds in taking_ids.items():
            taken = await call(live, method, path, intruder, ids)
            missing = None
            if (method, path) not in CREATES_WHEN_MISSING:
                missing = await call(live, method, path, intruder, missing_ids())
            sent += 1 if missing is None else 2
            if (why := answer_differs((method, path), kinds, taken, missing)) is not None:
                wrong.append(f"{method} {path}: {why}")
    changed = [user for user, rows in before.items() if await rows_of(db, user) != rows]
    agents_changed = await db.fetch(AGENTS, [ids["agent"] for ids in owners]) != agents_before
    made_for_intruders = [(i, t) for i in intruders for t, rows in (await rows_of(db, i)).items() if rows]
    model_calls = len(upstream.requests) - calls
    figures.record(
        "cross-user ids",
        "every operation of the OpenAPI schema that takes a thread, run, chat, agent or user id (path, "
        "query, header or body), called by another user with the owner's ids: the same answer as for a "
        "missing id (404 problem+json; 403 on admin routes; 204 for the AI SDK resume), the owner's rows in "
        "Postgres unchanged, nothing made for the caller, no model call",
        f"{len(taking_ids)} operations x {len(owners)} owners, {sent} requests: {len(wrong)} wrong; owners' "
        f"rows changed: {len(changed)}; agents changed: {int(agents_changed)}; tables with rows for the "
        f"callers: {len(made_for_intruders)}; model calls: {model_calls}"
        + (f"; {wrong[:5]}" if wrong else ""),
    )
    assert not wrong, wrong
    assert not changed
    assert not agents_changed
    assert not made_for_intruders
    assert model_calls == 0
    for ids in owners:
        removed = await live.delete(f"/agents/{ids['agent']}", headers=bearer(ids["user"], admin=True))
        assert removed.status_code == 204, removed.text


# ---------------------------------------------------------------------------------------------------
# (b) Mass assignment

SENTINEL = 424_242
CAP = 7
COST = 4242.42
INJECTED_ID = "00000000-0000-4000-8000-00000000abcd"
SYSTEM_TEXT = "INJECTED-SYSTEM-PROMPT"
SPOOFED_IP = "203.0.113.66"
# What a client must not be able to set, with values that would show in Postgres if they were applied.
INJECTIONS: dict[str, Any] = {
    "role": "system",
    "user_id": "{victim}",
    "user": "{victim}",
    "roles": ["admin"],
    "usage": {"prompt_tokens": SENTINEL, "completion_tokens": SENTINEL, "total_tokens": SENTINEL},
    "prompt_tokens": SENTINEL,
    "completion_tokens": SENTINEL,
    "total_tokens": SENTINEL,
    "message_count": SENTINEL,
    "max_tokens": CAP,
    "max_output_tokens": CAP,
    "max_completion_tokens": CAP,
    "status": "{status}",
    "cost": COST,
    "cost_usd": COST,
    "created_at": "2001-02-03T04:05:06Z",
    "id": INJECTED_ID,
    # Free-form on the routes that take it, but its `client` key is what the server recorded.
    "metadata": {"client": {"ip": SPOOFED_IP, "user_agent": "spoofed"}},
}
# Under `make reliability` each field is also sent with values of other types.
OTHER_VALUES: list[Any] = ["0", -1, None, {"nested": True}]
# A route's own documented input is not an injection there.
LEGIT = {
    ("PATCH", "/threads/{thread_id}"): {"status"},
    ("POST", "/agents"): {"max_output_tokens"},
    ("PATCH", "/agents/{slug}"): {"max_output_tokens"},
    ("POST", "/ai-sdk/chat"): {"id"},
}
# A valid body for every write route ({text} is unique per request); `admin` routes are called as one.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/chat"): {"json": {"message": "{text}"}},
    ("POST", "/chat/stream"): {"json": {"message": "{text}"}},
    ("POST", "/threads"): {"json": {"title": "{text}"}},
    ("PATCH", "/threads/{thread_id}"): {"json": {"title": "{text}"}},
    ("POST", "/threads/{thread_id}/regenerate"): {"json": {}},
    ("POST", "/v1/chat/completions"): {
        "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "{text}"}]}
    },
    ("POST", "/ai-sdk/chat"): {"json": {"id": "{text}", "messages": [UI_MESSAGE]}},
    ("POST", "/agents"): {"json": {"slug": "{text}", "name": "Mass", "system_prompt": "Hi."}, "admin": True},
    ("PATCH", "/agents/{slug}"): {"json": {"name": "{text}"}, "admin": True},
    ("POST", "/admin/threads/cleanup"): {"json": {"max_idle_minutes": 525_600}, "admin": True},
    ("PUT", "/admin/users/{user_id}/limits"): {"json": {"daily_token_budget": 1_000_000}, "admin": True},
}
# A request's earlier messages are the client's copy of the conversation: a system message there must
# reach neither the model nor Postgres.
SMUGGLED_SYSTEM = {
    ("POST", "/v1/chat/completions"): {"role": "system", "content": SYSTEM_TEXT},
    ("POST", "/ai-sdk/chat"): {
        "id": "s1",
        "role": "system",
        "parts": [{"type": "text", "text": SYSTEM_TEXT}],
    },
}
# $1 attacker, $2 victim, $3 injected id, $4 before the case began, $5 the token sentinel, $6 the
# smuggled system text, $7 the injected cost, $8 the injected max tokens, $9 the spoofed client IP.
INJECTED_ROWS = """
    SELECT
      (SELECT count(*) FROM threads WHERE user_id = $2 OR id = $3
              OR (user_id = $1 AND (created_at < $4 OR status <> 'active' OR message_count = $5
                                    OR metadata -> 'client' ->> 'ip' = $9)))
    + (SELECT count(*) FROM messages WHERE user_id = $2 OR id = $3
              OR (user_id = $1 AND (created_at < $4 OR role = 'system' OR strpos(content, $6) > 0
                                    OR metadata -> 'client' ->> 'ip' = $9)))
    + (SELECT count(*) FROM runs WHERE user_id = $2 OR id = $3
              OR (user_id = $1 AND (created_at < $4 OR status <> 'completed')))
    + (SELECT count(*) FROM usage_events WHERE user_id = $2
              OR (user_id = $1 AND (created_at < $4 OR cost_usd = $7
                                    OR total_tokens <> prompt_tokens + completion_tokens
                                    OR $5 IN (prompt_tokens, completion_tokens, total_tokens))))
    + (SELECT count(*) FROM user_limits WHERE user_id = $2)
    + (SELECT count(*) FROM user_usage WHERE user_id = $2)
    + (SELECT count(*) FROM agents WHERE slug = $3::text
              OR (slug LIKE 'mass-%' AND (created_at < $4 OR max_output_tokens = $8)))
"""
ROW_COUNT = """
    SELECT (SELECT count(*) FROM threads WHERE user_id = $1)
         + (SELECT count(*) FROM messages WHERE user_id = $1)
         + (SELECT count(*) FROM runs WHERE user_id = $1) + (SELECT count(*) FROM agents)
"""


class Attacker:
    """Sends each write route's valid body with one field more, and remembers what it made."""

    def __init__(self, client: httpx.AsyncClient, ids: Mapping[str, str]) -> None:
        self.client, self.ids, self.user = client, ids, ids["user"]

    async def send(
        self, method: str, path: str, extra: Mapping[str, Any], first: Any = None
    ) -> httpx.Response:
        spec = BODIES[(method, path)]
        body = {**fill(spec["json"], {**self.ids, "text": f"mass-{uuid.uuid4().hex[:10]}"}), **extra}
        if first is not None:
            body["messages"] = [first, *body["messages"]]
        url = concrete(path, lambda name: self.ids[PATH_IDS[name]])
        return await self.client.request(
            method, url, json=body, headers=bearer(self.user, admin="admin" in spec)
        )


def refusal_is_wrong(response: httpx.Response, wrote: bool, called: bool) -> str | None:
    if response.status_code in {401, 403, 404} or not is_problem(response):
        return f"refused as {response.status_code} {response.text[:80]}"
    return "refused, yet something was written or the model called" if wrote or called else None


@pytest.mark.case("mass assignment")
async def test_bodies_cannot_set_what_the_server_owns(
    live: httpx.AsyncClient, schema: dict[str, Any], db: asyncpg.Pool, upstream: FakeOpenAI, figures: Figures
) -> None:
    upstream.behaviour = Behaviour(reply="one two three four five six seven eight nine ten")
    writes = [(m, p, op) for m, p, op in operations(schema) if m in WRITES and "requestBody" in op]
    assert not (unknown := [f"{m} {p}" for m, p, _ in writes if (m, p) not in BODIES]), unknown
    started, attacker, victim, agent = (
        datetime.now(UTC),
        someone("attacker"),
        someone("victim"),
        someone("mass"),
    )
    thread = (await live.post("/threads", json={"title": "target"}, headers=bearer(attacker))).json()["id"]
    await live.post(
        "/chat", json={"message": "a first question", "thread_id": thread}, headers=bearer(attacker)
    )
    await live.post("/agents", json={"slug": agent, "name": "Mass", "system_prompt": "Hi."},
                    headers=bearer(attacker, admin=True))  # fmt: skip
    ids = {"thread": thread, "agent": agent, "user": attacker, "victim": victim}
    sender = Attacker(live, ids)
    baseline = {f"{m} {p}": (await sender.send(m, p, {})).status_code for m, p, _ in writes}
    assert all(200 <= code < 300 for code in baseline.values()), baseline
    refused, ignored, wrong = 0, 0, []
    for method, path, operation in writes:
        documented, legit = body_fields(schema, operation), LEGIT.get((method, path), set())
        status = "archived" if path.startswith("/threads") else "cancelled"
        for field, value in ((f, v) for f, v in INJECTIONS.items() if f not in legit):
            for sent in [value, *(OTHER_VALUES if FULL else [])]:
                injected = fill(sent, {**ids, "status": status})
                rows, calls = await db.fetchval(ROW_COUNT, attacker), len(upstream.requests)
                response = await sender.send(method, path, {field: injected})
                where = f"{method} {path} {field}={injected!r}"
                if response.status_code >= 400:
                    refused += 1
                    wrote, called = (
                        await db.fetchval(ROW_COUNT, attacker) != rows,
                        len(upstream.requests) != calls,
                    )
                    why = refusal_is_wrong(response, wrote, called) if response.status_code < 500 else "5xx"
                else:
                    ignored += 1
                    why = (
                        None
                        if field in documented
                        else f"an unknown field was accepted ({response.status_code})"
                    )
                if why is not None:
                    wrong.append(f"{where}: {why}")
        if (first := SMUGGLED_SYSTEM.get((method, path))) is not None:
            ignored += 1
            if (response := await sender.send(method, path, {}, first)).status_code != 200:
                wrong.append(f"{method} {path} after a system message: {response.status_code}")
    injected_rows = await db.fetchval(
        INJECTED_ROWS, attacker, victim, INJECTED_ID, started - timedelta(minutes=1), SENTINEL, SYSTEM_TEXT,
        COST, CAP, SPOOFED_IP,
    )  # fmt: skip
    capped = [r for r in upstream.requests if CAP in (r.get("max_tokens"), r.get("max_completion_tokens"))]
    smuggled = [r for r in upstream.requests if SYSTEM_TEXT in str(r.get("messages"))]
    for_victim = [r for r in upstream.requests if victim in str(r)]
    figures.record(
        "mass assignment",
        f"{len(INJECTIONS)} fields the server owns (role, user_id, roles, usage and token counts, "
        "max_tokens, max_output_tokens, status, cost, created_at, id, metadata.client, ...) sent one at a "
        "time to every write route of the schema, and a system message smuggled into the OpenAI and AI SDK "
        "message lists: refused with a 4xx problem+json that writes nothing, or accepted and ignored (no "
        "trace in Postgres, no model request with the injected max_tokens, user or system message)",
        f"{len(writes)} write routes, {refused + ignored} requests: {refused} refused, {ignored} accepted "
        f"and ignored, {len(wrong)} wrong; rows with an injected value: {injected_rows}; model requests "
        f"with the injected max_tokens: {len(capped)}, the smuggled system message: {len(smuggled)}, the "
        f"victim's id: {len(for_victim)}" + (f"; {wrong[:5]}" if wrong else ""),
    )
    assert not wrong, wrong
    assert injected_rows == 0
    assert not capped
    assert not smuggled
    assert not for_victim
    made = await db.fetch("SELECT slug FROM agents WHERE slug LIKE 'mass-%' AND created_at >= $1", started)
    for row in made:
        removed = await live.delete(f"/agents/{row['slug']}", headers=bearer(attacker, admin=True))
        assert removed.status_code == 204, removed.text


# ---------------------------------------------------------------------------------------------------
# (c) CORS from an origin that is not listed

NOT_LISTED = [EVIL, "null"]
# Near misses of the listed origin, under `make reliability`.
NEAR_MISSES = [f"{ALLOWED}.evil.example", "https://evilapp.example.com", "http://app.example.com",
               "https://app.example.com:8443", "HTTPS://APP.EXAMPLE.COM", f"{ALLOWED}/"]  # fmt: skip
# What a browser may also ask for outside the schema: the playground, its files, the API docs.
OUTSIDE_THE_SCHEMA = ["/", "/static/app.js", "/schema", "/schema/openapi.json"]


async def route_kinds(
    client: httpx.AsyncClient, user: str, run_id: str, asked: Mapping[str, str]
) -> dict[str, httpx.Response]:
    """One answer of each kind Threadline gives, to a request with `asked` (an Origin, a cookie)."""
    signed = {**bearer(user), **asked}
    ui = {"id": someone("cors"), "messages": [fill(UI_MESSAGE, {"text": "hi"})]}
    completion = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    made = await client.post("/threads", json={"title": "cors"}, headers=signed)
    return {
        "JSON 201": made,
        "JSON 200": await client.get("/threads", headers=signed),
        "SSE": await client.post("/chat/stream", json={"message": "across origins"}, headers=signed),
        "SSE resume": await client.get(f"/runs/{run_id}/stream", headers=signed),
        "AI SDK stream": await client.post("/ai-sdk/chat", json=ui, headers=signed),
        "OpenAI-compatible stream": await client.post(
            "/v1/chat/completions", json=completion, headers=signed
        ),
        "204": await client.delete(f"/threads/{made.json()['id']}", headers=signed),
        "problem 400": await client.post("/chat", json={}, headers=signed),
        "problem 401": await client.get("/threads", headers=dict(asked)),
        "problem 403": await client.get("/admin/stats", headers=signed),
        "problem 404": await client.get(f"/threads/{uuid.uuid4()}", headers=signed),
        "problem 405": await client.put("/threads", json={}, headers=signed),
        "HTML": await client.get("/", headers=dict(asked)),
        "static file": await client.get("/static/app.js", headers=dict(asked)),
        "metrics": await client.get("/metrics", headers=dict(asked)),
        "health": await client.get("/health", headers=dict(asked)),
    }


async def every_route(
    client: httpx.AsyncClient, document: Mapping[str, Any], user: str, asked: Mapping[str, str]
) -> dict[str, httpx.Response]:
    """Every operation of the schema (random ids, an empty body), and a preflight for every path."""
    answers = {}
    preflight = {**asked, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    for method, path, _ in operations(document):
        url = concrete(path, lambda _: str(uuid.uuid4()))
        body: dict[str, Any] | None = {} if method in WRITES else None
        answers[f"operation {method} {path}"] = await client.request(
            method, url, json=body, headers={**bearer(user), **asked}
        )
    for path in {path for _, path, _ in operations(document)} | set(OUTSIDE_THE_SCHEMA):
        url = concrete(path, lambda _: str(uuid.uuid4()))
        answers[f"preflight {path}"] = await client.options(url, headers=preflight)
        answers[f"GET of {path}"] = await client.get(url, headers={**bearer(user), **asked})
    return answers


def cors_of(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


@pytest.mark.case("CORS from other origins")
async def test_an_origin_that_is_not_listed_is_never_reflected(
    live: httpx.AsyncClient, schema: dict[str, Any], upstream: FakeOpenAI, figures: Figures
) -> None:
    upstream.behaviour = Behaviour(reply="for the listed origin only")
    user = someone("cors")
    run = await live.post("/chat", json={"message": "a run to resume"}, headers=bearer(user))
    assert run.status_code == 200, run.text
    run_id = run.json()["run_id"]
    # The control: the listed origin gets the headers on every kind of answer.
    listed = await route_kinds(live, user, run_id, {"Origin": ALLOWED, "Cookie": "session=1"})
    without = [kind for kind, r in listed.items() if (r.headers.get("access-control-allow-origin"),
               r.headers.get("access-control-allow-credentials")) != (ALLOWED, "true")]  # fmt: skip
    answers: dict[str, httpx.Response] = {}
    for origin in NOT_LISTED + (NEAR_MISSES if FULL else []):
        asked = {"Origin": origin, "Cookie": "session=1"}
        kinds = await route_kinds(live, user, run_id, asked)
        routes = await every_route(live, schema, user, asked)
        answers |= {f"{origin} {what}": r for what, r in (kinds | routes).items()}
    allow_origin = [w for w, r in answers.items() if "access-control-allow-origin" in r.headers]
    credentials = [w for w, r in answers.items() if "access-control-allow-credentials" in r.headers]
    any_header = [w for w, r in answers.items() if cors_of(r)]
    server_errors = [w for w, r in answers.items() if r.status_code >= 500]
    figures.record(
        "CORS from other origins",
        f"CORS on for {ALLOWED} with credentials; requests with a cookie and a token from {EVIL} and null "
        "(and near misses of the listed origin under make reliability) to every operation of the schema, "
        "a preflight of every path, and each kind of answer (JSON, SSE, AI SDK and OpenAI streams, 204, "
        "problem+json 400/401/403/404/405, HTML, static files, metrics): no Access-Control-* header at all, "
        "while the listed origin gets them on every kind",
        f"{len(answers)} answers to other origins: {len(allow_origin)} with Access-Control-Allow-Origin, "
        f"{len(credentials)} with Access-Control-Allow-Credentials, {len(any_header)} with any "
        f"Access-Control-* header, {len(server_errors)} 5xx; the listed origin: "
        f"{len(listed) - len(without)}/{len(listed)} kinds with its headers"
        + (f"; {any_header[:5]}" if any_header else ""),
    )
    assert not without, without
    assert not any_header, any_header[:20]
    assert not server_errors, server_errors


# ---------------------------------------------------------------------------------------------------
# (d) Oversized tokens
#
# test_tokens.py's "JWT negatives" has one 16 KiB token, signed with a wrong secret. Here: 100 KB (and,
# under `make reliability`, 16 KiB to 1 MiB), signed with the right secret too, in the header, and a
# run's stream token in the query.

PROMPTLY_S = 2.0
SIZES = {"100 KB": 100_000, "16 KiB": 16_384, "64 KiB": 65_536, "1 MiB": 1_048_576}
# uvicorn answers a request line over 64 KiB with a 400 of its own; a stream token this long still
# reaches Threadline in the query.
QUERY_TOKEN_CHARS = 45_000


def padded_claims(size: int, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sub": "bulky", "iat": int(now.timestamp()), "exp": int((now + timedelta(hours=1)).timestamp()),
            "roles": [], "pad": "p" * size, **extra}  # fmt: skip


def oversized_tokens(kb: str, size: int) -> dict[str, str]:
    return {
        f"{kb} signed with the right secret": jwt.encode(padded_claims(size), JWT_SECRET, "HS256"),
        f"{kb} signed with a wrong secret": jwt.encode(padded_claims(size), "w" * 48, "HS256"),
        f"{kb} of garbage": "g" * size,
    }


async def raw_status(server: Server, request_line: str) -> int | str:
    """The status of a request sent as written (httpx refuses URLs over 64 KiB before sending them)."""
    try:
        async with asyncio.timeout(PROMPTLY_S * 5):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError) as error:
        return type(error).__name__
    parts = status_line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else f"no status line: {status_line[:60]!r}"


async def timed(request: Awaitable[httpx.Response | int | str]) -> tuple[int | str, float]:
    started = time.monotonic()
    try:
        answer = await request
    except httpx.HTTPError as error:
        answer = type(error).__name__
    status = answer.status_code if isinstance(answer, httpx.Response) else answer
    return status, time.monotonic() - started


@pytest.mark.case("oversized tokens")
async def test_oversized_tokens_are_refused_promptly(
    live: httpx.AsyncClient, server: Server, upstream: FakeOpenAI, figures: Figures
) -> None:
    run = await live.post("/chat", json={"message": "a run to stream"}, headers=bearer("bulky"))
    assert run.status_code == 200, run.text
    stream = f"/runs/{run.json()['run_id']}/stream"
    sizes = SIZES if FULL else {"100 KB": SIZES["100 KB"]}
    answers: dict[str, tuple[int | str, float]] = {}
    calls = len(upstream.requests)
    for label, size in sizes.items():
        for name, token in oversized_tokens(label, size).items():
            headers = {"Authorization": f"Bearer {token}"}
            answers[f"{name}: GET /chat/history"] = await timed(live.get("/chat/history", headers=headers))
            answers[f"{name}: POST /chat"] = await timed(
                live.post("/chat", json={"message": "hi"}, headers=headers)
            )
            answers[f"{name}: GET /runs/{{id}}/stream"] = await timed(live.get(stream, headers=headers))
    claims = padded_claims(QUERY_TOKEN_CHARS, aud=STREAM_AUDIENCE, run=run.json()["run_id"])
    stream_token = jwt.encode(claims, JWT_SECRET, "HS256")
    in_query = f"{len(stream_token) // 1000} KB stream token, validly signed, in the query"
    answers[in_query] = await timed(raw_status(server, f"GET {stream}?token={stream_token} HTTP/1.1"))
    wrong = {name: a for name, a in answers.items() if a[0] not in (401, 431) or a[1] > PROMPTLY_S}
    slowest = max(elapsed for _, elapsed in answers.values())
    codes = "/".join(sorted({str(code) for code, _ in answers.values()}))
    figures.record(
        "oversized tokens",
        f"bearer tokens of {', '.join(sizes)} (validly signed, wrong secret, "
        f"garbage) on three routes, and a validly signed {len(stream_token) // 1000} KB stream token in a "
        f"stream's query: 401 or 431 within {PROMPTLY_S:.0f} s, never a 5xx, no model call",
        f"{len(answers) - len(wrong)}/{len(answers)} answered {codes}, slowest {slowest * 1000:.0f} ms; "
        f"model calls: {len(upstream.requests) - calls}" + (f"; wrong: {wrong}" if wrong else ""),
    )
    assert not wrong, wrong
    assert len(upstream.requests) == calls

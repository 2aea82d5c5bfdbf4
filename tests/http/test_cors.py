"""CORS: the configured origins get the headers a browser needs, on every kind of response (JSON,
SSE, problem+json, preflight); any other origin, `null`, and an app without the setting get none."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import AuthHeaders
from tests.support.accounting import Client, app_client
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sessions import new_thread

APP = "https://app.example.com"
OTHER_APP = "http://localhost:5173"
EVIL = "https://evil.example"
NOT_ALLOWED = [EVIL, "null", "https://app.example.com.evil.example", "http://app.example.com"]


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


@pytest.fixture(scope="module")
async def cors_client(base_env: dict[str, str]) -> AsyncIterator[Client]:
    # A tight rate limit, so a 429 can be checked too: each test has a user, and a window, of its own.
    async with app_client(
        base_env, THREADLINE_CORS_ORIGINS=f"{APP}, {OTHER_APP}", THREADLINE_RATE_LIMIT="2/minute"
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def credentials_client(base_env: dict[str, str]) -> AsyncIterator[Client]:
    async with app_client(
        base_env, THREADLINE_CORS_ORIGINS=APP, THREADLINE_CORS_ALLOW_CREDENTIALS="true"
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def any_origin_client(base_env: dict[str, str]) -> AsyncIterator[Client]:
    async with app_client(base_env, THREADLINE_CORS_ORIGINS="*") as client:
        yield client


def preflight(origin: str, method: str, *headers: str) -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    return {**asked, "Access-Control-Request-Headers": ", ".join(headers)} if headers else asked


@pytest.mark.parametrize("origin", [APP, OTHER_APP])
async def test_a_preflight_from_an_allowed_origin_allows_what_a_chat_front_end_sends(
    cors_client: Client, origin: str
) -> None:
    chat = await cors_client.options(
        "/chat/stream", headers=preflight(origin, "POST", "authorization", "content-type", "idempotency-key")
    )
    resume = await cors_client.options(
        f"/runs/{uuid.uuid4()}/stream", headers=preflight(origin, "GET", "authorization", "last-event-id")
    )
    rename = await cors_client.options(f"/threads/{uuid.uuid4()}", headers=preflight(origin, "PATCH"))

    for response in (chat, resume, rename):
        assert response.status_code == 204, response.text
        assert response.headers["access-control-allow-origin"] == origin
        assert "origin" in listed(response.headers["vary"])
        assert {"get", "post", "patch", "put", "delete"} <= listed(
            response.headers["access-control-allow-methods"]
        )
        assert {"authorization", "content-type", "last-event-id", "idempotency-key", "x-thread-id"} <= listed(
            response.headers["access-control-allow-headers"]
        )
        assert int(response.headers["access-control-max-age"]) > 0
        assert "access-control-allow-credentials" not in response.headers


async def test_an_allowed_origin_can_read_json_and_the_headers_clients_need(
    cors_client: Client, auth: AuthHeaders, user: str
) -> None:
    response = await cors_client.get("/threads", headers=auth(user, Origin=APP))

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "origin" in listed(response.headers["vary"])
    exposed = listed(response.headers["access-control-expose-headers"])
    assert {"location", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= exposed
    assert {"ratelimit-policy", "x-thread-id", "x-run-id", "content-disposition"} <= exposed
    assert "access-control-allow-credentials" not in response.headers


async def test_an_allowed_origin_can_read_a_streamed_reply(
    cors_client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="streamed across origins")

    response = await cors_client.post("/chat/stream", json={"message": "hi"}, headers=auth(user, Origin=APP))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["access-control-allow-origin"] == APP
    assert "location" in listed(response.headers["access-control-expose-headers"])
    assert response.headers["location"].startswith("/runs/")
    assert '"type":"done"' in response.text
    resumed = await cors_client.get(response.headers["location"], headers=auth(user, Origin=APP))
    assert resumed.status_code == 200
    assert resumed.headers["access-control-allow-origin"] == APP


async def test_an_allowed_origin_can_read_problems_401_404_and_429(
    cors_client: Client, auth: AuthHeaders, user: str
) -> None:
    missing = await cors_client.get(f"/threads/{uuid.uuid4()}", headers=auth(user, Origin=APP))
    unsigned = await cors_client.get("/threads", headers={"Origin": APP})
    for _ in range(2):
        allowed = await cors_client.post("/chat", json={"message": "one"}, headers=auth(user, Origin=APP))
        assert allowed.status_code == 200, allowed.text
    limited = await cors_client.post("/chat", json={"message": "one more"}, headers=auth(user, Origin=APP))

    for response, status in ((missing, 404), (unsigned, 401), (limited, 429)):
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["access-control-allow-origin"] == APP
    assert int(limited.headers["retry-after"]) >= 1
    assert {"retry-after", "ratelimit-remaining"} <= listed(limited.headers["access-control-expose-headers"])


@pytest.mark.parametrize("origin", NOT_ALLOWED)
async def test_any_other_origin_gets_no_cors_header_at_all(
    cors_client: Client, auth: AuthHeaders, user: str, origin: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="not for other origins")
    asked = await cors_client.options("/chat/stream", headers=preflight(origin, "POST", "authorization"))
    read = await cors_client.get("/threads", headers=auth(user, Origin=origin, Cookie="session=1"))
    streamed = await cors_client.post(
        "/chat/stream", json={"message": "hi"}, headers=auth(user, Origin=origin)
    )
    problem = await cors_client.get(f"/threads/{uuid.uuid4()}", headers=auth(user, Origin=origin))

    assert asked.status_code == 400
    assert (read.status_code, streamed.status_code, problem.status_code) == (200, 200, 404)
    for response in (asked, read, streamed, problem):
        assert cors_headers(response) == {}, response.headers
    # Still marked as depending on the origin, so no cache hands this answer to an allowed origin.
    assert "origin" in listed(read.headers["vary"])


async def test_without_the_setting_no_response_has_a_cors_header(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="same origin only")
    asked = await client.options("/chat/stream", headers=preflight(APP, "POST", "authorization"))
    read = await client.get("/threads", headers=auth(user, Origin=APP))
    streamed = await client.post("/chat/stream", json={"message": "hi"}, headers=auth(user, Origin=APP))
    problem = await client.get(f"/threads/{uuid.uuid4()}", headers=auth(user, Origin=APP))

    assert (read.status_code, streamed.status_code, problem.status_code) == (200, 200, 404)
    for response in (asked, read, streamed, problem):
        assert cors_headers(response) == {}, response.headers


async def test_credentials_are_allowed_for_the_listed_origin_only(
    credentials_client: Client, auth: AuthHeaders, user: str
) -> None:
    allowed = await credentials_client.get("/threads", headers=auth(user, Origin=APP, Cookie="session=1"))
    asked = await credentials_client.options("/threads", headers=preflight(APP, "GET", "authorization"))
    evil = await credentials_client.get("/threads", headers=auth(user, Origin=EVIL, Cookie="session=1"))
    evil_asked = await credentials_client.options("/threads", headers=preflight(EVIL, "GET"))

    for response in (allowed, asked):
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
    assert cors_headers(evil) == {}
    assert cors_headers(evil_asked) == {}


async def test_any_origin_is_answered_with_a_star_never_with_its_own_name(
    any_origin_client: Client, auth: AuthHeaders, user: str
) -> None:
    plain = await any_origin_client.get("/threads", headers=auth(user, Origin=EVIL))
    with_cookie = await any_origin_client.get("/threads", headers=auth(user, Origin=EVIL, Cookie="session=1"))
    asked = await any_origin_client.options("/threads", headers=preflight(EVIL, "GET", "authorization"))

    for response in (plain, with_cookie, asked):
        assert response.status_code in {200, 204}
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


async def test_a_thread_made_across_origins_is_the_callers(
    cors_client: Client, auth: AuthHeaders, user: str
) -> None:
    """CORS changes which pages may read answers, never whose data they are."""
    thread = await new_thread(cors_client, auth(user, Origin=APP), title="mine")
    stranger = await cors_client.get(f"/threads/{thread['id']}", headers=auth("stranger", Origin=APP))
    assert stranger.status_code == 404
    assert stranger.headers["access-control-allow-origin"] == APP

"""`GET /search`: hybrid full-text and vector search over the caller's own messages."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.memory import echo_agent, embedded
from tests.support.sessions import chat, new_thread

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def history(client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool) -> dict[str, str]:
    """Two threads of the user's, every message embedded."""
    agent = await echo_agent(client, auth)
    travel = await new_thread(client, auth(user), agent=agent)
    cooking = await new_thread(client, auth(user), agent=agent)
    await chat(client, auth(user), travel["id"], "We are flying to Lisbon in March with the kids.")
    await chat(client, auth(user), travel["id"], "Book a hotel near the river <b>please</b> & quickly.")
    await chat(client, auth(user), cooking["id"], "My sourdough starter needs feeding twice a day.")
    await embedded(db, user, 6)
    return {"travel": travel["id"], "cooking": cooking["id"]}


async def test_finds_words_with_stemming_and_highlights_them(
    client: Client, auth: AuthHeaders, user: str, history: dict[str, str]
) -> None:
    response = await client.get("/search", params={"q": "Lisbon trip in march"}, headers=auth(user))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "Lisbon trip in march"
    # All words must match for full text ("trip" does not); the vector arm still finds the message.
    assert body["results"][0]["thread_id"] == history["travel"]
    assert body["results"][0]["text_rank"] is None
    both = (await client.get("/search", params={"q": "lisbon marches"}, headers=auth(user))).json()
    top = both["results"][:2]
    # The question and the echo model's reply quoting it: found by both arms.
    assert {r["role"] for r in top} == {"user", "assistant"}
    assert {r["text_rank"] for r in top} == {1, 2}
    assert all(r["vector_rank"] in {1, 2} for r in top)
    question = next(r for r in top if r["role"] == "user")
    assert question["content"] == "We are flying to Lisbon in March with the kids."
    assert "<mark>Lisbon</mark>" in question["snippet"]
    assert "<mark>March</mark>" in question["snippet"]
    assert top[0]["score"] >= top[1]["score"] > 1 / 61
    scores = [r["score"] for r in both["results"]]
    assert scores == sorted(scores, reverse=True)


async def test_snippets_escape_the_message_markup(
    client: Client, auth: AuthHeaders, user: str, history: dict[str, str]
) -> None:
    body = (await client.get("/search", params={"q": "hotel river"}, headers=auth(user))).json()
    snippet = next(r["snippet"] for r in body["results"] if r["role"] == "user")
    # Tags are dropped by ts_headline, and what is left of the text is escaped.
    assert "<b>" not in snippet
    assert "&amp; quickly" in snippet
    assert "<mark>hotel</mark>" in snippet


async def test_the_vector_arm_finds_what_full_text_misses(
    client: Client, auth: AuthHeaders, user: str, history: dict[str, str]
) -> None:
    # "starters" stems to "starter" for both; "sourdough-starter" is one token for full text only.
    body = (await client.get("/search", params={"q": "sourdough-starters"}, headers=auth(user))).json()
    found = [r for r in body["results"] if r["thread_id"] == history["cooking"]]
    assert found
    assert found[0]["vector_rank"] is not None


async def test_thread_id_narrows_the_search(
    client: Client, auth: AuthHeaders, user: str, history: dict[str, str]
) -> None:
    params = {"q": "lisbon sourdough", "thread_id": history["cooking"]}
    body = (await client.get("/search", params=params, headers=auth(user))).json()
    assert body["results"]
    assert {r["thread_id"] for r in body["results"]} == {history["cooking"]}
    limited = await client.get("/search", params={"q": "lisbon", "limit": 1}, headers=auth(user))
    assert len(limited.json()["results"]) == 1


async def test_another_users_thread_is_not_found(
    client: Client, auth: AuthHeaders, user: str, history: dict[str, str]
) -> None:
    params = {"q": "lisbon", "thread_id": history["travel"]}
    response = await client.get("/search", params=params, headers=auth(f"{user}-other"))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_canaries_never_reach_another_user(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    canary = f"zq{uuid.uuid4().hex}"
    agent = await echo_agent(client, auth)
    thread = await new_thread(client, auth(user), agent=agent)
    await chat(client, auth(user), thread["id"], f"The vault phrase is {canary} remember it")
    await embedded(db, user, 2)
    mine = (await client.get("/search", params={"q": canary}, headers=auth(user))).json()
    assert canary in mine["results"][0]["content"]
    for query in (canary, f'"{canary}"', f"vault phrase {canary}", "vault phrase remember"):
        theirs = await client.get("/search", params={"q": query}, headers=auth(f"{user}-b"))
        assert theirs.status_code == 200
        assert theirs.json()["results"] == []


@pytest.mark.parametrize(
    "query",
    [
        "'", '"', '"unbalanced', "a & b | !c", "(((", ")", "!!", ":*", "lisbon:*", "-", "- -", "or or",
        "\\", "%", "_", "%_%", "<script>alert(1)</script>", "'; DROP TABLE messages; --", "🙂", "a" * 1000,
        "the", "é", "\u202e", "\ue000\ue001", "$1", "NULL", "lisbon OR march", "-lisbon",
    ],
)  # fmt: skip
async def test_special_characters_never_fail(
    client: Client, auth: AuthHeaders, user: str, query: str
) -> None:
    response = await client.get("/search", params={"q": query}, headers=auth(user))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"q": ""}, 422),
        ({"q": "   "}, 422),
        ({"q": "a\x00b"}, 422),
        ({"q": "a" * 1001}, 422),
        ({"q": "x", "limit": "0"}, 422),
        ({"q": "x", "limit": "51"}, 422),
        ({"q": "x", "limit": "many"}, 400),
        ({"q": "x", "thread_id": "not-a-uuid"}, 400),
    ],
)
async def test_bad_queries_are_4xx_problems(
    client: Client, auth: AuthHeaders, user: str, params: dict[str, str], status: int
) -> None:
    response = await client.get("/search", params=params, headers=auth(user))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_search_needs_a_token(client: Client) -> None:
    assert (await client.get("/search", params={"q": "x"})).status_code == 401

"""Every route but health, readiness, docs and metrics needs a valid token; users see only their own data."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import JWT_SECRET, AuthHeaders
from threadline.http.auth import issue_token

Client = AsyncTestClient[Litestar]

PROTECTED = [
    ("POST", "/chat"),
    ("POST", "/chat/stream"),
    ("GET", "/chat/history"),
    ("DELETE", "/chat/history"),
    ("GET", "/chat/sessions"),
    ("GET", f"/runs/{uuid.uuid4()}"),
    ("GET", f"/runs/{uuid.uuid4()}/stream"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-a-jwt",
        f"Bearer {issue_token('someone-else-secret' * 3, 'mallory')}",
        "Bearer " + jwt.encode({"sub": "mallory", "exp": int(time.time()) - 60}, JWT_SECRET, "HS256"),
        "Bearer " + jwt.encode({"sub": "mallory", "exp": int(time.time()) + 60}, "", "none"),
    ],
    ids=["missing", "garbage", "wrong-secret", "expired", "alg-none"],
)
async def test_protected_routes_answer_401(
    client: Client, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.request(method, path, headers=headers, json={"message": "hi"})
    assert response.status_code == 401


async def test_another_users_thread_and_run_answer_404_like_missing_ones(
    client: Client, auth: AuthHeaders, user: str
) -> None:
    owner = (await client.post("/chat", json={"message": "secret plans"}, headers=auth(user))).json()
    intruder = auth(f"intruder-{uuid.uuid4().hex[:6]}")
    thread_id, run_id = owner["thread_id"], owner["run_id"]
    for method, path, body in [
        ("GET", f"/chat/history?thread_id={thread_id}", None),
        ("DELETE", f"/chat/history?thread_id={thread_id}", None),
        ("POST", "/chat", {"message": "mine now", "thread_id": thread_id}),
        ("POST", "/chat/stream", {"message": "mine now", "thread_id": thread_id}),
        ("GET", f"/runs/{run_id}", None),
        ("GET", f"/runs/{run_id}/stream", None),
    ]:
        theirs = await client.request(method, path, headers=intruder, json=body)
        missing_path = path.replace(thread_id, str(uuid.uuid4())).replace(run_id, str(uuid.uuid4()))
        missing_body = body and {**body, "thread_id": str(uuid.uuid4())}
        missing = await client.request(method, missing_path, headers=intruder, json=missing_body)
        assert theirs.status_code == missing.status_code == 404, (method, path)
        assert theirs.json()["detail"] == missing.json()["detail"]
    history = (await client.get(f"/chat/history?thread_id={thread_id}", headers=auth(user))).json()
    assert [m["content"] for m in history["messages"]] == ["secret plans", history["messages"][1]["content"]]
    assert history["message_count"] == 2


async def test_options_on_an_admin_route_is_not_a_server_error(client: Client) -> None:
    # Found by Schemathesis: the admin guard asked for a user that OPTIONS requests never have.
    response = await client.options("/agents")
    assert response.status_code < 500

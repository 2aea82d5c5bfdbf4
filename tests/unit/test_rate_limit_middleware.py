"""When the limiter cannot answer: chat routes refuse (503) rather than go unlimited; the failed
sign-in check steps aside. A limiter that fails on purpose stands in for an unreachable Redis."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from litestar import Litestar, get, post
from litestar.enums import ScopeType
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from threadline.domain.usage import Quota
from threadline.http.errors import problem_details_config
from threadline.http.rate_limits import AuthFailureLimit, UserRateLimit
from threadline.settings import Settings


class BrokenLimiter:
    calls = 0

    async def hit(self, rule: str, key: str) -> tuple[bool, Quota]:
        self.calls += 1
        raise TimeoutError

    async def blocked(self, rule: str, key: str) -> Quota | None:
        self.calls += 1
        raise ConnectionError


def signed_in(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = SimpleNamespace(user_id="someone")
        await app(scope, receive, send)

    return middleware


@post("/chat", opt={"rate_limit": "chat"}, status_code=200)
async def chat() -> dict[str, Any]:
    return {"ok": True}


@get("/elsewhere")
async def elsewhere() -> dict[str, Any]:
    return {"ok": True}


def app_with(limiter: BrokenLimiter) -> Litestar:
    auth_failures = AuthFailureLimit()
    app = Litestar(
        route_handlers=[chat, elsewhere],
        on_app_init=[auth_failures.on_app_init],
        middleware=[signed_in, UserRateLimit()],
        plugins=[ProblemDetailsPlugin(problem_details_config())],
    )
    services = SimpleNamespace(accounting=SimpleNamespace(limiter=limiter), settings=Settings.from_env({}))
    app.state.services = services
    return app


async def test_chat_routes_refuse_when_limits_cannot_be_checked() -> None:
    limiter = BrokenLimiter()
    async with AsyncTestClient(app=app_with(limiter)) as client:
        response = await client.post("/chat")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "unavailable"
    assert limiter.calls >= 1


def from_address(app: ASGIApp, ip: str) -> ASGIApp:
    """The test client's peer is "testclient"; the failed sign-in check needs an address."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            scope["client"] = (ip, 50_000)
        await app(scope, receive, send)

    return asgi


async def test_the_failed_sign_in_check_steps_aside_when_limits_cannot_be_checked() -> None:
    limiter = BrokenLimiter()
    async with AsyncTestClient(app=from_address(app_with(limiter), "203.0.113.9")) as client:
        response = await client.get("/elsewhere")
    assert response.status_code == 200
    assert limiter.calls == 1  # it was asked, it failed, the request went on

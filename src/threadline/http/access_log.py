"""One log line per request when its response ends: method, path, status, duration. Never bodies."""

from __future__ import annotations

import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("threadline.access")
QUIET_PATHS = frozenset({"/health", "/metrics"})


def access_log(app: ASGIApp) -> ASGIApp:
    # Litestar's logging middleware logs every body message: one line per SSE event. This logs one.
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in QUIET_PATHS:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def logged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, logged_send)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    return middleware

"""Cross-origin access for browser front ends: which origins, methods and headers, and nothing more.

Off by default (no `THREADLINE_CORS_ORIGINS`: no CORS header at all). Litestar's CORS middleware
answers preflights and adds the headers; `only_allowed_origins` then takes them off the responses to
any origin that is not allowed (the middleware adds its expose and allow lists to every response that
has an `Origin`), and keeps `*` from ever turning into the caller's origin.
"""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.types import BeforeMessageSendHookHandler, Message, Method, Scope

from threadline.settings import CorsSettings

ALLOW_METHODS: list[Method] = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# What Threadline's own routes read: the bearer token, JSON bodies, a resumed stream's position, a
# retry's key, and the OpenAI-compatible route's thread.
ALLOW_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key", "X-Thread-Id"]
# What clients read from responses that browsers hide unless told: where a run streams, when to retry,
# the quota, which thread and run an OpenAI-compatible or AI SDK request used, a download's file name.
EXPOSE_HEADERS = [
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "X-Thread-Id",
    "X-Run-Id",
    "X-Vercel-AI-UI-Message-Stream",
    "Content-Disposition",
]
PREFLIGHT_MAX_AGE_S = 600


def cors_config(settings: CorsSettings) -> CORSConfig | None:
    if not settings.enabled:
        return None
    return CORSConfig(
        allow_origins=list(settings.origins),
        allow_methods=list(ALLOW_METHODS),
        allow_headers=list(ALLOW_HEADERS),
        allow_credentials=settings.allow_credentials,
        expose_headers=list(EXPOSE_HEADERS),
        max_age=PREFLIGHT_MAX_AGE_S,
    )


def only_allowed_origins(config: CORSConfig) -> BeforeMessageSendHookHandler:
    """A before-send hook: CORS headers go to allowed origins only, and `*` is never reflected."""

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        origin = Headers.from_scope(scope).get("origin")
        if config.is_allow_all_origins:
            # Litestar answers a request that carries a cookie with its own origin: never do that.
            if "access-control-allow-origin" in headers:
                headers["Access-Control-Allow-Origin"] = "*"
            return
        # The answer depends on the origin, so caches must keep one per origin.
        varies = {part.strip().lower() for value in headers.getall("vary", []) for part in value.split(",")}
        if "origin" not in varies:
            headers.extend_header_value("Vary", "Origin")
        if origin is not None and not config.is_origin_allowed(origin):
            for name in {key for key in headers if key.lower().startswith("access-control-")}:
                del headers[name]

    return hook

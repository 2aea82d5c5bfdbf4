"""Request rate limits at the edge: per user on the routes that start runs, per IP on failed sign-ins.

A route opts in with `opt={"rate_limit": RULE}`; its responses carry the IETF draft's
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers (plus `RateLimit-Policy`),
and a request over the limit is answered 429 problem+json with `Retry-After` before its body is
read. The windows live in Redis (see adapters/limits_rate_limiter.py), so every process shares them.
When Redis does not answer in time, a chat request is answered 503 (its run could not stream without
Redis anyway), while the failed sign-in check lets requests through (authentication still applies).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from threadline.accounting import AUTH_FAILURES
from threadline.domain.errors import RateLimited, Unavailable
from threadline.domain.usage import Quota
from threadline.http.client_info import client_ip, parse_address, trusted_proxies
from threadline.ports import RateLimiter
from threadline.services import Services

log = logging.getLogger("threadline.limits")
# Requests that never need a credential are never refused for other requests' failed sign-ins.
PUBLIC_PREFIXES = ("/health", "/ready", "/metrics", "/schema", "/static", "/favicon.ico")


def quota_headers(quota: Quota) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(quota.limit),
        "RateLimit-Remaining": str(quota.remaining),
        "RateLimit-Reset": str(quota.reset_s),
        "RateLimit-Policy": f"{quota.limit};w={quota.window_s}",
    }


def _services(scope: Scope) -> Services:
    services: Services = Litestar.from_scope(scope).state.services
    return services


def _limiter(scope: Scope) -> RateLimiter:
    return _services(scope).accounting.limiter


def refused(quota: Quota, what: str) -> RateLimited:
    return RateLimited(
        f"Too many {what}: the limit is {quota.limit} per {quota.window_s} seconds.",
        retry_after_s=max(1, quota.reset_s),
        quota=quota,
    )


class UserRateLimit(ASGIMiddleware):
    """Counts each request of a signed-in user against the route's rule (`opt["rate_limit"]`)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        rule: str | None = scope["route_handler"].opt.get("rate_limit")
        user: Any = scope.get("user")
        if rule is None or user is None:
            await next_app(scope, receive, send)
            return
        try:
            allowed, quota = await _limiter(scope).hit(rule, user.user_id)
        except Exception:
            # Refuse rather than let it through: a limit that lapses under load is no limit, and these
            # routes stream through Redis anyway, so without it they could not serve the request.
            log.warning("rate limiter unavailable; refusing a %s request", rule, exc_info=True)
            raise Unavailable(
                "Rate limits cannot be checked right now; retry shortly.", retry_after_s=1
            ) from None
        if not allowed:
            raise refused(quota, "requests")
        headers = quota_headers(quota)

        async def send_with_quota(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        await next_app(scope, receive, send_with_quota)


class AuthFailureLimit:
    """Per client IP: after too many requests refused for their credentials, refuse the IP's requests.

    It must run before authentication (see `on_app_init`), so it sees the 401s that authentication
    raises and can stop a guesser before its next guess is checked. Loopback addresses are not
    limited: behind a local proxy that is not in THREADLINE_TRUSTED_PROXIES every client would share
    one, and one bad client would lock everyone out.
    """

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, self.middleware)
        return app_config

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["path"].startswith(PUBLIC_PREFIXES):
                await app(scope, receive, send)
                return
            limiter, ip = _limiter(scope), self._ip(scope)
            if ip is None:
                await app(scope, receive, send)
                return
            try:
                quota = await limiter.blocked(AUTH_FAILURES, ip)
            except Exception:
                log.warning("rate limiter unavailable; not checking failed sign-ins", exc_info=True)
                quota = None
            if quota is not None:
                raise refused(quota, "requests with invalid credentials from this address")
            failed = False

            async def watch(message: Message) -> None:
                nonlocal failed
                if message["type"] == "http.response.start" and message["status"] == 401:
                    failed = True
                await send(message)

            try:
                await app(scope, receive, watch)
            except NotAuthorizedException:
                failed = True
                raise
            finally:
                if failed:
                    await self._count(limiter, ip)

        return limited

    @staticmethod
    def _ip(scope: Scope) -> str | None:
        trusted = trusted_proxies(_services(scope).settings.sessions.trusted_proxies)
        client = scope.get("client")
        forwarded = Headers.from_scope(scope).get("x-forwarded-for")
        address = parse_address(client_ip(client[0] if client else None, forwarded, trusted))
        return None if address is None or address.is_loopback else str(address)

    @staticmethod
    async def _count(limiter: RateLimiter, ip: str) -> None:
        try:
            await limiter.hit(AUTH_FAILURES, ip)
        except Exception:
            log.warning("rate limiter unavailable; a failed sign-in went uncounted", exc_info=True)

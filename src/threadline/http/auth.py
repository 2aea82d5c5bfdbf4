"""Who is calling: HS256 JWTs whose `sub` is the user id and whose `roles` may hold `admin`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token

ALGORITHM = "HS256"
# A run's stream authenticates itself: `EventSource` cannot send headers, so it also takes a token in
# the query string, scoped to that one run (see `issue_stream_token`).
PUBLIC_PATHS = [
    "^/$",
    "^/health$",
    "^/ready$",
    "^/schema",
    "^/metrics$",
    "^/static/",
    "^/favicon.ico$",
    "^/runs/[^/]+/stream$",
]
STREAM_AUDIENCE = "threadline:run-stream"
_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
# Identity providers' tokens are a few KiB even with many groups; a longer one is refused before its
# signature is checked (a validly signed 1 MB token was accepted, and ran a model call, before).
MAX_TOKEN_CHARS = 16_384


class Principal(msgspec.Struct, frozen=True):
    user_id: str
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


async def principal_from_token(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> Principal | None:
    # Tokens with an audience are narrower credentials (a run's stream); they open nothing else.
    if token.aud is not None or not _USER_ID.match(token.sub):
        return None
    roles = token.extras.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        return None
    return Principal(token.sub, frozenset(roles))


def within_size(token: str) -> str:
    if len(token) > MAX_TOKEN_CHARS:
        raise NotAuthorizedException(f"The token is longer than {MAX_TOKEN_CHARS} characters.")
    return token


class BoundedJWTMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, refusing an oversized token before decoding it."""

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        return await super().authenticate_token(within_size(encoded_token), connection)


def jwt_auth(secret: str) -> JWTAuth[Principal, Token]:
    return JWTAuth[Principal, Token](
        retrieve_user_handler=principal_from_token,
        token_secret=secret,
        algorithm=ALGORITHM,
        exclude=PUBLIC_PATHS,
        exclude_opt_key="public",
        authentication_middleware_class=BoundedJWTMiddleware,
    )


def issue_token(secret: str, user_id: str, *, admin: bool = False, ttl: timedelta = timedelta(days=1)) -> str:
    if not _USER_ID.match(user_id):
        raise ValueError("A user id is 1 to 128 printable characters.")
    token = Token(
        sub=user_id,
        exp=datetime.now(UTC) + ttl,
        iat=datetime.now(UTC),
        extras={"roles": ["admin"] if admin else []},
    )
    return token.encode(secret, ALGORITHM)


def admin_only(connection: ASGIConnection[Any, Principal, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for admin routes."""
    # JWTAuth lets OPTIONS through unauthenticated (CORS preflights carry no credentials), so there is
    # no user to ask: the answer (the allowed methods) reveals nothing. Found by Schemathesis as a 500.
    if connection.scope.get("method") == "OPTIONS":
        return
    if not connection.user.is_admin:
        raise PermissionDeniedException("This route needs the admin role.")


def issue_stream_token(secret: str, user_id: str, run_id: UUID, *, ttl_s: int) -> str:
    """A read-only credential for one run's stream, safe to put in an `EventSource` URL."""
    token = Token(
        sub=user_id,
        exp=datetime.now(UTC) + timedelta(seconds=ttl_s),
        aud=STREAM_AUDIENCE,
        extras={"run": str(run_id)},
    )
    return token.encode(secret, ALGORITHM)


def stream_reader(secret: str, run_id: UUID, *, authorization: str | None, token: str | None) -> str:
    """The user allowed to read `run_id`'s stream: from a run-scoped `token`, or a normal bearer token."""
    if token:
        decoded = Token.decode(within_size(token), secret, ALGORITHM, audience=STREAM_AUDIENCE)
        if decoded.extras.get("run") != str(run_id):
            raise NotAuthorizedException("This stream token is for another run.")
        return decoded.sub
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise NotAuthorizedException("A bearer token or a stream token is required.")
    decoded = Token.decode(within_size(credentials), secret, ALGORITHM)
    if decoded.aud is not None or not _USER_ID.match(decoded.sub):
        raise NotAuthorizedException("Invalid token")
    return decoded.sub

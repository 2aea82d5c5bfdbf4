"""`/health` (the process answers) and `/ready` (Postgres and Redis answer too)."""

from __future__ import annotations

import asyncio

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Response

from threadline.http.schemas import HealthResponse, ReadyResponse
from threadline.services import Services

PROBE_TIMEOUT_S = 2.0


@get("/health", tags=["operations"], summary="The process is up", opt={"public": True})
async def health() -> HealthResponse:
    return HealthResponse(status="ok")


async def _postgres_ok(services: Services) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S), services.database.connection() as connection:
            await connection.fetchval("SELECT 1")
    except Exception:
        return False
    return True


async def _redis_ok(services: Services) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return bool(await services.redis.ping())
    except Exception:
        return False


@get("/ready", tags=["operations"], summary="Postgres and Redis answer", opt={"public": True})
async def ready(services: NamedDependency[Services]) -> Response[ReadyResponse]:
    postgres, redis = await asyncio.gather(_postgres_ok(services), _redis_ok(services))
    body = ReadyResponse(
        status="ready" if postgres and redis else "unavailable", postgres=postgres, redis=redis
    )
    return Response(
        body,
        status_code=200 if postgres and redis else 503,
        headers={"Retry-After": "2"} if not (postgres and redis) else None,
    )

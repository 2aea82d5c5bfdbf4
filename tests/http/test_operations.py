"""`/health`, `/ready`, `/schema` and `/metrics`."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]


async def test_health_needs_no_token(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_postgres_and_redis(client: Client) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "postgres": True, "redis": True}


async def test_openapi_schema_lists_the_chat_routes(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"/chat", "/chat/stream", "/chat/history", "/chat/sessions", "/runs/{run_id}"} <= set(
        schema["paths"]
    )
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_metrics_are_exposed_for_prometheus(client: Client) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "threadline_requests_total" in response.text

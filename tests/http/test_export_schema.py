"""`GET /threads/{id}/export` answers what its OpenAPI schema declares, in both formats.

Schemathesis reported the JSON export as a schema violation: the schema said a string. Each answer is
validated here with Schemathesis' own response check against the app's live schema.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.schemas import APIOperation

from tests.conftest import AuthHeaders
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sessions import Client, chat, new_thread

EXPORT = "/threads/{thread_id}/export"
Operation = APIOperation[Any, Any, Any, Any]


@pytest.fixture(scope="module")
async def export_operation(client: Client) -> Operation:
    document: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    operation: Operation = schemathesis.openapi.from_dict(document)[EXPORT]["GET"]
    return operation


async def test_both_formats_match_the_declared_schema(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, export_operation: Operation
) -> None:
    upstream.behaviour = Behaviour(reply="Exported *verbatim*.")
    thread = await new_thread(client, auth(user), title="to export", metadata={"app": {"tab": 2}})
    await chat(client, auth(user), thread["id"], "Export me, please.")
    path = EXPORT.format(thread_id=thread["id"])

    as_json = await client.get(path, headers=auth(user))
    as_markdown = await client.get(path, params={"format": "markdown"}, headers=auth(user))

    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json()["format"] == "threadline.thread.v1"
    assert [m["role"] for m in as_json.json()["messages"]] == ["user", "assistant"]
    assert as_markdown.headers["content-type"].startswith("text/markdown")
    assert "Exported *verbatim*." in as_markdown.text
    for response in (as_json, as_markdown):
        assert response.status_code == 200, response.text
        assert export_operation.validate_response(response) is None


def test_the_check_refuses_what_the_schema_used_to_declare(export_operation: Operation) -> None:
    """The old schema promised a JSON string: such an answer fails the check the test above passes."""
    request = httpx.Request("GET", "http://testserver.local/threads/0/export")
    a_string = httpx.Response(200, json="a thread", request=request)
    a_string.elapsed = timedelta(milliseconds=1)
    with pytest.raises(Exception, match="Response violates schema"):
        export_operation.validate_response(a_string)

"""The session snippets of docs/api.md (marked `<!-- sessions-example -->`) run, in order, as the
curl commands they are: parsed like a shell would, sent to the app, and every one succeeds."""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders

Client = AsyncTestClient[Litestar]
DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SNIPPET = re.compile(r"<!-- sessions-example -->\s*```sh\n(.*?)```", re.DOTALL)
ASSIGNMENT = re.compile(r"^(\w+)=\$\((.*) \| jq -r \.(\w+)\)$", re.DOTALL)
VARIABLE = re.compile(r"\$(\w+)")


def commands() -> list[str]:
    """Every command of every snippet, continuation lines joined."""
    found: list[str] = []
    for snippet in SNIPPET.findall(DOC.read_text()):
        pending = ""
        for line in snippet.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line.strip()
            try:
                shlex.split(pending)
            except ValueError:  # a quoted string goes on to the next line
                continue
            if pending:
                found.append(pending)
            pending = ""
        assert not pending, f"unbalanced quotes in {snippet}"
    return found


def curl_request(command: str, variables: dict[str, str]) -> dict[str, Any]:
    """What a `curl` command line sends: method, path, query, headers and body."""
    words = [VARIABLE.sub(lambda m: variables[m.group(1)], word) for word in shlex.split(command)]
    assert words[0] == "curl", command
    method, url, headers, data, query, get = None, "", {}, None, [], False
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "-d":
            data = next(rest)
        elif word == "--data-urlencode":
            query.append(tuple(next(rest).split("=", 1)))
        elif word == "-G":
            get = True
        elif word.startswith("-"):
            assert word in {"-s", "-sN", "-N"}, f"unsupported curl option {word}"
        else:
            url = word
    method = method or ("GET" if get or data is None else "POST")
    return {"method": method, "url": url, "headers": headers, "content": data, "params": query}


async def test_the_documented_session_commands_all_succeed(client: Client, auth: AuthHeaders) -> None:
    run = uuid.uuid4().hex[:8]
    variables = {
        "THREADLINE": "",
        "TOKEN": auth("alice")["Authorization"].removeprefix("Bearer "),
        "ADMIN_TOKEN": auth(f"ops-{run}", admin=True)["Authorization"].removeprefix("Bearer "),
    }
    found = commands()
    assert len(found) >= 20
    for command in found:
        assignment = ASSIGNMENT.match(command)
        request = curl_request(assignment.group(2) if assignment else command, variables)
        if request["url"] == "/agents" and request["method"] == "POST":
            # The session's database outlives one run of this test: the documented slug may exist.
            await client.delete("/agents/support", headers=auth(f"ops-{run}", admin=True))
        response = await client.request(**request)
        assert response.status_code < 400, f"{command}\n→ {response.status_code} {response.text}"
        if assignment:
            variables[assignment.group(1)] = response.json()[assignment.group(3)]
    assert set(variables) >= {"THREAD", "SUPPORT"}

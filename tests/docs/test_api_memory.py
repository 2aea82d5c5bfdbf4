"""The snippets of docs/api.md's "Memory and search" (`<!-- run: memory -->`) run against a live
Threadline and print what the text says they print."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import JWT_SECRET
from tests.docs.test_api_snippets import COMMANDS, DOC, NODE_DIR
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.live_app import LiveApp
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
SNIPPET = re.compile(r"<!-- run: memory -->\s*```(sh|js|python)\n(.*?)```", re.DOTALL)
# Both snippets run as one user, in order: the second finds what the first said.
EXPECTED = [
    r'"snippet":"Our <mark>anniversary</mark> <mark>dinner</mark> is booked.*"text_rank":1,"vector_rank":1',
    r"^user \d\.\d{4} .*<mark>Casa</mark> <mark>Lupo</mark>",
]


def test_the_memory_snippets_run_in_order(live_threadline: LiveApp, upstream: FakeOpenAI, user: str) -> None:
    upstream.behaviour = Behaviour()
    snippets = SNIPPET.findall(DOC.read_text())
    assert len(snippets) == len(EXPECTED)
    env = {**os.environ, "THREADLINE": live_threadline.url, "TOKEN": issue_token(JWT_SECRET, user)}
    for (lang, code), expected in zip(snippets, EXPECTED, strict=True):
        result = subprocess.run(
            [*COMMANDS[lang], code],
            env=env,
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{lang} snippet failed:\n{code}\n{result.stderr}"
        assert re.search(expected, result.stdout, re.DOTALL | re.MULTILINE), result.stdout

"""Every snippet in docs/api.md marked `<!-- run: clients -->` runs against a live Threadline and succeeds.

Shell snippets run in bash, JavaScript in node (from tests/node, where the `ai` package is
installed), Python in this interpreter; each gets THREADLINE and TOKEN in its environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import JWT_SECRET
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.live_app import LiveApp
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"
SNIPPET = re.compile(r"<!-- run: clients -->\s*```(sh|js|python)\n(.*?)```", re.DOTALL)
NODE_DIR = ROOT / "tests" / "node"
COMMANDS = {
    "sh": ["bash", "-euo", "pipefail", "-c"],
    "js": ["node", "--input-type=module", "-e"],
    "python": [sys.executable, "-c"],
}
# What each snippet's output must show, in the order the snippets appear.
EXPECTED = [
    r'"type":"text-delta".*"type":"finish".*data: \[DONE\]',
    r"^204$",
    r"^nothing is running$",
    r"Echo: Hello from JavaScript",
    r"(?i)x-thread-id: [0-9a-f-]{36}.*\"chat\.completion\"",
    r'"chat\.completion\.chunk".*"usage":\{.*data: \[DONE\]',
    r'"object":"list".*"id":"default"',
    r"^default runs gpt-4o-mini$",
    r"Echo: What is my name\?\n\d+ tokens",
    r"[0-9a-f-]{36} Echo: Hello",
]


def snippets() -> list[tuple[str, str]]:
    return [(lang, code) for lang, code in SNIPPET.findall(DOC.read_text())]


def test_the_expectations_match_the_snippets() -> None:
    assert len(snippets()) == len(EXPECTED)


@pytest.mark.parametrize(("index", "expected"), list(enumerate(EXPECTED)))
def test_a_snippet_runs(
    index: int, expected: str, live_threadline: LiveApp, upstream: FakeOpenAI, user: str
) -> None:
    upstream.behaviour = Behaviour()
    lang, code = snippets()[index]
    env = {**os.environ, "THREADLINE": live_threadline.url, "TOKEN": issue_token(JWT_SECRET, user)}
    command = [*COMMANDS[lang], code]
    result = subprocess.run(
        command, env=env, cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout.replace("\r\n", "\n")
    assert result.returncode == 0, f"{lang} snippet {index} failed:\n{code}\n{result.stderr}"
    assert re.search(expected, output, re.DOTALL | re.MULTILINE), f"snippet {index} printed:\n{output}"

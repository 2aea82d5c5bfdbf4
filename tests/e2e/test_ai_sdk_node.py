"""The real `ai` npm package (pinned in tests/node/package-lock.json) against a live Threadline.

Each case sets how the fake upstream answers, then runs one test of tests/node/ai_sdk.test.mjs with
node's own test runner. `make test` installs the package with `npm ci`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import JWT_SECRET
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.live_app import LiveApp
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def run_node_test(app: LiveApp, user: str, name: str) -> str:
    node = shutil.which("node")
    assert node, "node is needed for the AI SDK test (Node 20 or newer)"
    assert (NODE_DIR / "node_modules" / "ai").is_dir(), "run `npm ci --prefix tests/node` (make test does)"
    env = {
        **os.environ,
        "THREADLINE_URL": app.url,
        "THREADLINE_TOKEN": issue_token(JWT_SECRET, user),
        "NODE_NO_WARNINGS": "1",
    }
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", f"--test-name-pattern={re.escape(name)}", "ai_sdk.test.mjs"],
        cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output}\n----- threadline log -----\n{app.log_tail()}"
    assert re.search(r"^# pass 1$", output, re.MULTILINE), output
    return output


def test_a_reply_parses_into_a_ui_message(live_threadline: LiveApp, upstream: FakeOpenAI, user: str) -> None:
    run_node_test(live_threadline, user, "a reply streams into one assistant UI message")


def test_a_chat_resumes_a_running_reply(live_threadline: LiveApp, upstream: FakeOpenAI, user: str) -> None:
    upstream.behaviour = Behaviour(gap_s=0.08)
    run_node_test(live_threadline, user, "Chat sends, and a second Chat on the same id resumes")


def test_a_cancelled_reply_ends_with_abort(live_threadline: LiveApp, upstream: FakeOpenAI, user: str) -> None:
    upstream.behaviour = Behaviour(gap_s=0.1)
    run_node_test(live_threadline, user, "a reply cancelled through /runs/{id}/cancel")


def test_a_chat_regenerates_its_last_reply(live_threadline: LiveApp, upstream: FakeOpenAI, user: str) -> None:
    run_node_test(live_threadline, user, "Chat.regenerate() replaces the last reply")


def test_a_failure_is_the_chats_error(live_threadline: LiveApp, upstream: FakeOpenAI, user: str) -> None:
    upstream.behaviour = Behaviour(fail_status=400, fail_times=1)
    run_node_test(live_threadline, user, "an upstream failure puts the Chat in its error state")

"""`threadline serve` as `make run` starts it: embedded Postgres and Redis, the echo model, a real socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.sse import parse_sse, reply_text

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(data_dir: Path, port: int) -> dict[str, str]:
    """The caller's environment without any Threadline, database, Redis or model setting."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("THREADLINE_", "OPENAI_", "DATABASE_URL", "REDIS_URL", "TEST_"))
    }
    return {**keep, "THREADLINE_DATA_DIR": str(data_dir), "PORT": str(port), "THREADLINE_ECHO_DELAY_MS": "5"}


def processes_using(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir) in cmdline and "pytest" not in cmdline:
            found.append(process)
    return found


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    data_dir = Path(tempfile.mkdtemp(prefix="tl-e2e-"))
    port = free_port()
    env = clean_env(data_dir, port)
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(BIN / "threadline"), "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"threadline serve exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("threadline serve did not become ready in 90 s")
    yield base, data_dir, process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def token(data_dir: Path, user: str) -> str:
    env = clean_env(data_dir, 0)
    result = subprocess.run(
        [str(BIN / "threadline"), "token", user], env=env, capture_output=True, check=True, timeout=30
    )
    return result.stdout.decode().strip()


def test_a_reply_streams_and_lands_in_history(server: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    base, data_dir, _ = server
    headers = {"Authorization": f"Bearer {token(data_dir, 'alice')}"}
    with httpx.stream(
        "POST", f"{base}/chat/stream", json={"message": "hi there"}, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-accel-buffering"] == "no"
        body = b"".join(response.iter_bytes())
    events = parse_sse(body)
    assert events[0].type == "start"
    assert events[-1].type == "done"
    assert events[-1].data["status"] == "completed"
    assert reply_text(events) == 'You said: "hi there".'
    history = httpx.get(f"{base}/chat/history", headers=headers, timeout=10).json()
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "hi there"),
        ("assistant", 'You said: "hi there".'),
    ]


def test_sigterm_stops_the_server_and_the_embedded_services(
    server: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    _, data_dir, process = server
    assert processes_using(data_dir), "embedded postgres or redis should be running"
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    deadline = time.monotonic() + 15
    while processes_using(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_using(data_dir) == []

"""One real Threadline process on a free port, for clients that need a socket (Node, OpenAI SDK, browser)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
_FOREIGN = ("THREADLINE_", "OPENAI_", "DATABASE_URL", "REDIS_URL", "TEST_", "PORT", "HOST")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LiveApp:
    def __init__(self, url: str, log_path: Path) -> None:
        self.url = url
        self.log_path = log_path

    def log_tail(self, chars: int = 6_000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextlib.contextmanager
def live_app(settings: Mapping[str, str], log_dir: Path, *, ready_within_s: float = 60) -> Iterator[LiveApp]:
    """`uvicorn threadline.app:create_app --factory` with `settings` as its whole Threadline environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env.update(PYTHONUNBUFFERED="1", **settings)
    log_path = log_dir / f"threadline-{port}.log"
    command = [str(BIN / "uvicorn"), "threadline.app:create_app", "--factory", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    app = LiveApp(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + ready_within_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"threadline exited before it was ready:\n{app.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{app.url}/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"threadline was not ready within {ready_within_s} s:\n{app.log_tail()}")
            time.sleep(0.1)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

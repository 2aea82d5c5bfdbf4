"""The benchmark's processes: the fake upstream, `threadline serve`, and what they cost in CPU and memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import psutil

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0
# Settings the benchmark must never inherit from the shell that runs it.
_FOREIGN = ("THREADLINE_", "OPENAI_", "DATABASE_URL", "REDIS_URL", "PORT", "HOST")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(settings: Mapping[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return {**keep, "PYTHONUNBUFFERED": "1", **settings}


class Child:
    """One child process with its own session and log; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early; read {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code < 500:
                        return
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready in {READY_TIMEOUT_S} s; read {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def upstream(port: int, log_dir: Path, *, tokens: int, ttft_ms: float, gap_ms: float) -> Iterator[Child]:
    argv = [
        sys.executable, "-m", "bench.upstream", "--port", str(port), "--tokens", str(tokens),
        "--ttft-ms", str(ttft_ms), "--gap-ms", str(gap_ms),
    ]  # fmt: skip
    child = Child("upstream", argv, clean_env({}), log_dir)
    try:
        child.wait_ready(f"http://127.0.0.1:{port}/v1/models")
        yield child
    finally:
        child.stop()


@contextlib.contextmanager
def threadline(settings: Mapping[str, str], port: int, log_dir: Path, name: str) -> Iterator[Child]:
    """`threadline serve` on `port` with `settings` as its whole Threadline environment."""
    env = clean_env({**settings, "PORT": str(port), "HOST": "127.0.0.1"})
    child = Child(name, [str(BIN / "threadline"), "serve"], env, log_dir)
    try:
        child.wait_ready(f"http://127.0.0.1:{port}/ready")
        yield child
    finally:
        child.stop()


def tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants (uvicorn's supervisor and its workers)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class Meter:
    """CPU seconds and peak resident memory of process trees over one measured interval.

    Memory is sampled every 100 ms on a thread; the peak is the largest sum over the tree, and
    the largest single process.
    """

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.1) -> None:
        self._pids = dict(pids)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_rss: dict[str, int] = dict.fromkeys(pids, 0)
        self.peak_process_rss: dict[str, int] = dict.fromkeys(pids, 0)
        self._cpu_start: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __enter__(self) -> Meter:
        self._cpu_start = {name: cpu_seconds(tree(pid)) for name, pid in self._pids.items()}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.cpu = {name: cpu_seconds(tree(pid)) - self._cpu_start[name] for name, pid in self._pids.items()}

    def _sample(self) -> None:
        # Bounded by the measured interval; a forgotten meter still ends after an hour.
        deadline = time.monotonic() + 3600
        while not self._stop.wait(self._interval_s) and time.monotonic() < deadline:
            for name, pid in self._pids.items():
                sizes = []
                for process in tree(pid):
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        sizes.append(process.memory_info().rss)
                self.peak_rss[name] = max(self.peak_rss[name], sum(sizes))
                self.peak_process_rss[name] = max(self.peak_process_rss[name], max(sizes, default=0))

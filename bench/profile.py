"""Sampling the server under load with py-spy, summarised as the functions that take the most time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec

PY_SPY = Path(sys.executable).parent / "py-spy"


class Hotspot(msgspec.Struct, frozen=True):
    function: str
    share: float


class Profile(msgspec.Struct, frozen=True):
    samples: int
    raw_path: str
    self_time: list[Hotspot]
    inclusive: list[Hotspot]
    by_package: list[Hotspot]


# Where a sample's time goes: the innermost frame in one of these packages names it.
PACKAGES = (
    "threadline", "litestar", "uvicorn", "httptools", "h11", "redis", "openai", "httpx", "httpcore",
    "pydantic", "anyio", "asyncpg", "msgspec", "structlog", "prometheus_client", "jwt", "limits", "logging",
)  # fmt: skip


def _package(frame: str) -> str | None:
    where = frame.partition(" (")[2]
    for package in PACKAGES:
        if f"/{package}/" in where or where.startswith(f"{package}/"):
            return package
    return None


def available() -> bool:
    return PY_SPY.exists() or shutil.which("py-spy") is not None


def record(pid: int, out: Path, *, duration_s: int, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid`; wait on the result.

    Blocking sampling (py-spy pauses the process for each sample): its stacks are whole, where
    non-blocking samples of a busy event loop came back cut short (half of them had no frame below
    the loop). The profiled level is a run of its own, so the pauses never touch the figures.
    """
    binary = str(PY_SPY) if PY_SPY.exists() else "py-spy"
    argv = [
        binary, "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", str(rate),
        "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame_name(frame: str) -> str:
    # py-spy's raw frames read `function (path/to/module.py:line)`: keep function and file.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarise(raw: Path, top: int = 15) -> Profile:
    """Self time by leaf function and inclusive time by function, as shares of all samples."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [_frame_name(f) for f in raw_frames]
        # Only the event loop's thread serves requests; the others (the log writer, the executor)
        # mostly wait, and py-spy cannot always tell a waiting thread from a working one.
        if not frames or raw_frames[0].startswith("Thread._bootstrap"):
            continue
        total += count
        owner = next((p for f in reversed(raw_frames) if (p := _package(f))), "asyncio loop, other")
        packages[owner] += count
        leaf[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return Profile(samples=0, raw_path=str(raw), self_time=[], inclusive=[], by_package=[])

    def hot(counter: Counter[str]) -> list[Hotspot]:
        return [Hotspot(name, count / total) for name, count in counter.most_common(top)]

    return Profile(
        samples=total,
        raw_path=str(raw),
        self_time=hot(leaf),
        inclusive=hot(inclusive),
        by_package=hot(packages),
    )

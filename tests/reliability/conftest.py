"""The reliability suite: real Threadline processes under faults, storms, fuzzing and forged tokens.

Every case records its pass criterion and its measured figure. `make test` runs each case at a
small scale; `make reliability` (TEST_RELIABILITY=full) runs them at the issue's scale and rewrites
the results table of docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.conftest import JWT_SECRET
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import Server, server_env

FULL = os.environ.get("TEST_RELIABILITY", "").lower() == "full"
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
# Short enough that a crash is recovered from within the test, long enough that a storm that keeps
# the pool busy for a few seconds does not make live runs look orphaned (at 3 s, 300 sockets did).
LEASE_S = 10
# A row of the results table: the case, then the rest of the row.
ROW = re.compile(r"^\| (?!case \||---)([^|]+?) \| (.+) \|$", re.MULTILINE)
# The lease, one sweep interval and slack: how long a dead process's run may still look alive.
ORPHAN_WITHIN_S = 40.0


def scale(fast: int, full: int) -> int:
    """How many streams, clients or cases: the issue's figure under `make reliability`."""
    return full if FULL else fast


class Figures:
    """What each case measured, in order, for the report."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}

    def record(self, case: str, criterion: str, figure: str) -> None:
        self.rows[case] = (criterion, figure)
        print(f"\n[reliability] {case}: {figure} (pass: {criterion})")


_FIGURES = Figures()
_OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    case = item.get_closest_marker("case")
    if case is not None and (call.when == "call" or report.failed):
        _OUTCOMES[str(case.args[0])] = "pass" if report.passed else "FAIL"
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under `make reliability`, update this session's rows of the table in docs/reliability.md."""
    if not FULL or not _FIGURES.rows or not DOC.exists():
        return
    start, end = "<!-- reliability:results -->", "<!-- /reliability:results -->"
    text = DOC.read_text()
    pattern = re.compile(re.escape(start) + "(.*?)" + re.escape(end), re.DOTALL)
    found = pattern.search(text)
    # Rows of cases this session did not run stay as they were.
    rows = dict(ROW.findall(found.group(1))) if found else {}
    for case, (criterion, figure) in _FIGURES.rows.items():
        rows[case] = f"{criterion} | {figure} | {_OUTCOMES.get(case, 'not run')}"
    lines = ["| case | pass criterion | measured | result |", "|---|---|---|---|"]
    lines += [f"| {case} | {rest} |" for case, rest in rows.items()]
    block = f"{start}\n" + "\n".join(lines) + f"\n{end}"
    DOC.write_text(pattern.sub(block.replace("\\", "\\\\"), text) if found else text + block)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "case(name): a reliability case reported in docs/reliability.md")


def app_env(
    data_dir: Path, database_url: str, redis_url: str, upstream: FakeOpenAI, **extra: str
) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings: Mapping[str, str] = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": upstream.url,
        "OPENAI_API_KEY": "test-key",
        "THREADLINE_JWT_SECRET": JWT_SECRET,
        "THREADLINE_MIGRATE_ON_START": "false",
        "THREADLINE_MODEL_MAX_RETRIES": "0",
        "THREADLINE_HEARTBEAT_S": "1",
        "THREADLINE_RUN_LEASE_S": str(LEASE_S),
        "THREADLINE_SHUTDOWN_GRACE": "5",
        "THREADLINE_DATA_DIR": str(data_dir),
        # Storms send hundreds of requests a second from one address: limits are not under test here.
        "THREADLINE_RATE_LIMIT": "100000/minute",
        "THREADLINE_AUTH_FAILURE_LIMIT": "100000/minute",
        "THREADLINE_LOG_LEVEL": "WARNING",
        **extra,
    }
    return server_env(settings)


def start_pair(root: Path, env_for: Mapping[str, dict[str, str]]) -> tuple[Server, Server]:
    a, b = (Server(name, env=env_for[name], log_dir=root) for name in ("A", "B"))
    for server in (a, b):
        server.start()
    for server in (a, b):
        server.wait_ready()
    return a, b


def stop_pair(*servers: Server) -> None:
    for server in servers:
        try:
            server.terminate()
        except RuntimeError:
            server.kill()


@pytest.fixture(scope="module")
def pair(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Processes A and B on the session's Postgres, Redis and fake upstream."""
    root = tmp_path_factory.mktemp("reliability")
    envs = {name: app_env(root / name, database_url, redis_url, upstream) for name in ("A", "B")}
    a, b = start_pair(root, envs)
    try:
        yield a, b
    finally:
        stop_pair(a, b)


@pytest.fixture
async def servers(pair: tuple[Server, Server]) -> tuple[Server, Server]:
    """Both processes up: a case that killed them may have failed before restarting them."""
    for server in pair:
        if not server.alive:
            await asyncio.to_thread(server.start)
            await asyncio.to_thread(server.wait_ready)
    return pair


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        yield client

"""The embedded PostgreSQL and Redis servers: start, answer, stop, and survive a killed owner."""

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

import threadline.embedded
from threadline.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError, embedded_services

# Starts both servers in a separate process that the test then SIGKILLs, as `kill -9` would.
OWNER_SCRIPT = """
import json, sys, time
from pathlib import Path
from threadline.embedded import EmbeddedPostgres, EmbeddedRedis
pg, rd = EmbeddedPostgres(Path(sys.argv[1])), EmbeddedRedis(Path(sys.argv[1]))
urls = [pg.start(), rd.start()]
print(json.dumps({"pids": [pg.pid, rd.pid], "urls": urls}), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # an exited orphan waiting for init to reap it


def _pids(data_dir: Path) -> list[int]:
    files = (data_dir / "postgres" / "postmaster.pid", data_dir / "redis" / "redis.pid")
    return [int(f.read_text().split()[0]) for f in files if f.exists()]


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.02)


def _kill_leftovers(path: Path) -> None:
    for pid in _pids(path):  # a failed test must not leave servers behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root the server runs as another user, and every pytest session resets
    # /tmp/pytest-of-root to 0700, which would lock that user out mid-test.
    path = Path(tempfile.mkdtemp(prefix="threadline-test-"))
    try:
        yield path
    finally:
        _kill_leftovers(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """One data dir for the module, so initdb runs once; every test leaves its servers stopped."""
    with _scratch_dir() as path:
        yield path


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    with _scratch_dir() as path:
        yield path


async def _check_postgres(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        name = "SELECT name FROM pg_available_extensions WHERE name = 'vector'"
        assert await conn.fetchval(name) == "vector"
    finally:
        await conn.close()


async def _check_redis(url: str) -> None:
    client = redis.asyncio.from_url(url, socket_timeout=5)
    try:
        assert await client.ping()
        await client.set("threadline:test", "1")
        assert await client.get("threadline:test") == b"1"
    finally:
        await client.aclose()


def _start_owner_and_sigkill(data_dir: Path) -> tuple[list[int], list[str]]:
    src = Path(threadline.embedded.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-c", OWNER_SCRIPT, str(data_dir)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, env=env) as owner:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
        owner.send_signal(signal.SIGKILL)
    return started["pids"], started["urls"]


async def test_services_answer_and_stop(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadline.embedded")
    with embedded_services(data_dir, postgres=True, redis=True) as urls:
        assert urls.database_url is not None
        assert urls.redis_url is not None
        await _check_postgres(urls.database_url)
        await _check_redis(urls.redis_url)
        pids = _pids(data_dir)
        assert len(pids) == 2
    assert not any(_alive(pid) for pid in pids)
    assert not _pids(data_dir)  # clean shutdowns remove their pid files
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("embedded postgres at") and "DATABASE_URL" in m for m in messages)
    assert any(m.startswith("embedded redis at") and "REDIS_URL" in m for m in messages)


def _interrupted_services(data_dir: Path, pids: list[int]) -> None:
    with embedded_services(data_dir, postgres=True, redis=True):
        pids.extend(_pids(data_dir))
        raise KeyboardInterrupt


async def test_services_stop_on_keyboard_interrupt(data_dir: Path) -> None:
    pids: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        _interrupted_services(data_dir, pids)
    assert len(pids) == 2
    assert not any(_alive(pid) for pid in pids)


async def test_only_requested_services_start(data_dir: Path) -> None:
    with embedded_services(data_dir, postgres=False, redis=True) as urls:
        assert urls.database_url is None
        assert urls.redis_url is not None
        assert not (data_dir / "postgres" / "postmaster.pid").exists()


async def test_restart_adopts_servers_of_a_sigkilled_owner(data_dir: Path) -> None:
    (pg_pid, redis_pid), (dsn, redis_url) = _start_owner_and_sigkill(data_dir)
    assert _alive(pg_pid)
    assert _alive(redis_pid)
    pg, rd = EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)
    try:
        assert pg.start() == dsn
        assert rd.start() == redis_url
        assert (pg.pid, rd.pid) == (pg_pid, redis_pid)
        await _check_postgres(dsn)
        await _check_redis(redis_url)
    finally:
        pg.stop()
        rd.stop()
    _wait_dead(pg_pid)
    _wait_dead(redis_pid)


async def test_start_replaces_killed_servers_and_stop_is_idempotent(data_dir: Path) -> None:
    old_pg, old_rd = EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)
    old_pg.start()
    old_rd.start()
    killed = _pids(data_dir)
    for pid in killed:  # leaves postmaster.pid, redis.pid and the sockets behind
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
    pg, rd = EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)
    try:
        await _check_postgres(pg.start())
        await _check_redis(rd.start())
        assert {pg.pid, rd.pid}.isdisjoint(killed)
    finally:
        for server in (pg, rd, old_pg, old_rd):
            server.stop()
            server.stop()
    assert not any(_alive(pid) for pid in killed)
    assert not _pids(data_dir)


async def test_deep_data_dir_gets_a_short_socket_dir(fresh_dir: Path) -> None:
    deep = fresh_dir / ("d" * 60) / ("e" * 60)
    with embedded_services(deep, postgres=True, redis=True) as urls:
        assert urls.database_url is not None
        assert urls.redis_url is not None
        assert str(deep) not in urls.database_url
        assert str(deep) not in urls.redis_url
        await _check_postgres(urls.database_url)
        await _check_redis(urls.redis_url)
        socket_dirs = [
            Path(urls.database_url.split("host=")[1].split("&")[0]),
            Path(urls.redis_url[7:]).parent,
        ]
    assert all(len(str(d)) < 60 and not d.exists() for d in socket_dirs)  # removed with their servers


def test_a_failed_start_names_the_log(fresh_dir: Path) -> None:
    pgdata = fresh_dir / "postgres"
    pgdata.mkdir(mode=0o700)
    (pgdata / "PG_VERSION").write_text("9\n")  # not a usable cluster: the server refuses to start
    pg = EmbeddedPostgres(fresh_dir)
    with pytest.raises(EmbeddedServerError, match=r"embedded postgres .*postgres\.log"):
        pg.start()
    assert pg.pid is None
    pg.stop()

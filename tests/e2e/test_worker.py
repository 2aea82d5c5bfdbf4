"""`threadline worker`: a process of its own that runs the queued jobs and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import with_database
from threadline.db import migrate
from threadline.db.titles import TITLE_JOB
from threadline.jobs import ABANDON_JOB, ENQUEUE

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


@pytest.fixture
async def own_database(postgres_server_url: str) -> AsyncIterator[str]:
    """A database only this test's worker serves: the app's in-process worker never sees its jobs."""
    name = f"threadline_worker_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(postgres_server_url, name)
    await asyncio.to_thread(migrate.upgrade, url, embedding_dim=256)
    yield url
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def enqueue(connection: asyncpg.Connection, name: str, payload: bytes) -> None:
    await connection.execute(ENQUEUE, [0], [name], [payload], [timedelta(0)], [None], [None])


async def test_the_worker_runs_queued_jobs_and_stops_on_sigterm(own_database: str, tmp_path: Path) -> None:
    connection = await asyncpg.connect(own_database, timeout=10)
    idle, untitled = uuid.uuid4(), uuid.uuid4()
    await connection.execute(
        "INSERT INTO threads (id, user_id, agent, last_activity_at) VALUES "
        "($1, 'u', 'default', now() - interval '2 hours'), ($2, 'u', 'default', now())",
        idle,
        untitled,
    )
    await connection.execute(
        "INSERT INTO messages (id, thread_id, user_id, seq, role, content) "
        "VALUES ($1, $2, 'u', 1, 'user', $3)",
        uuid.uuid4(),
        untitled,
        "Which   trains go to Porto tomorrow?",
    )
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env |= {"DATABASE_URL": own_database, "THREADLINE_DATA_DIR": str(tmp_path)}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            str(BIN / "threadline"), "worker", env=env, stdout=log, stderr=log
        )
    try:
        await enqueue(connection, ABANDON_JOB, b"{}")
        await enqueue(connection, TITLE_JOB, b'{"thread_id": "%s"}' % str(untitled).encode())
        for _ in range(300):
            status = await connection.fetchval("SELECT status FROM threads WHERE id = $1", idle)
            title = await connection.fetchval("SELECT title FROM threads WHERE id = $1", untitled)
            if status == "abandoned" and title is not None:
                break
            assert worker.returncode is None, log_path.read_text()
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"the worker did not run the jobs:\n{log_path.read_text()}")
        assert title == "Which trains go to Porto tomorrow?"
        stopping = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 15) == 0, log_path.read_text()
        assert time.monotonic() - stopping < 10
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await connection.close()


def test_the_worker_refuses_to_start_an_embedded_database(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "THREADLINE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(BIN / "threadline"), "worker"], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert b"DATABASE_URL" in done.stderr

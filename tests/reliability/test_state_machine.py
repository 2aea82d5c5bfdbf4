"""A Hypothesis state machine over conversations, against a real app process, checked in Postgres.

Rules: start a thread; send a message and read the whole reply, or leave after a few tokens (with
`on_disconnect=continue` or `cancel`); resume a run with Last-Event-ID; cancel a run; retry a send
with its client_message_id; delete a thread. After every step, and once every run has ended at the
end of each example, Postgres must agree with what the client was told: every accepted message
stored once and no other, `seq` gap-free per thread, at most one live run per thread, exactly one
usage row for every ended run (none for a live one), and only `completed` or `cancelled` endings.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import FULL, Figures, app_env
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.processes import Server, SseStream, eventually, open_sse
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600 if FULL else 300)]
T = TypeVar("T")
REPLY = " ".join(f"step{i}" for i in range(10))
TERMINAL = ("completed", "failed", "cancelled", "interrupted", "timeout")
PROPER = ("completed", "cancelled")
STEP_S = 30.0
SETTINGS = settings(
    max_examples=60 if FULL else 5,
    stateful_step_count=30 if FULL else 10,
    # CI runs the same few examples every time; `make reliability` explores.
    derandomize=not FULL,
    database=None,
    # A step is an HTTP exchange with a real process and a few queries: slow by Hypothesis' measure,
    # and not a sign of a slow strategy.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Tally:
    """Across examples: how many steps of each rule ran, how they were answered, what was checked."""

    examples: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    checks: int = 0


@dataclass(frozen=True)
class Env:
    loop: asyncio.AbstractEventLoop
    server: Server
    http: httpx.AsyncClient
    db: asyncpg.Pool
    tally: Tally


@dataclass
class ThreadModel:
    accepted: list[str] = field(default_factory=list)  # client_message_ids, in order
    runs: list[str] = field(default_factory=list)
    deleted: bool = False


@dataclass
class RunModel:
    thread_id: str
    body: dict[str, Any]
    frames: list[bytes] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    ended: str | None = None  # the status the client was told (a `done` event or a cancel's answer)

    @property
    def complete(self) -> bool:
        return bool(self.frames) and b'"type":"done"' in self.frames[-1]


class Conversations(RuleBasedStateMachine):
    env: ClassVar[Env]
    threads = Bundle("threads")
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.user = f"machine-{uuid.uuid4().hex[:10]}"
        self.headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, self.user)}"}
        self.model_threads: dict[str, ThreadModel] = {}
        self.model_runs: dict[str, RunModel] = {}
        self.sent = 0
        self.env.tally.examples += 1

    # Rules run in Hypothesis' thread; their I/O runs on the test's event loop.
    def call(self, coroutine: Awaitable[T]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(STEP_S * 2):
                return await coroutine

        return asyncio.run_coroutine_threadsafe(bounded(), self.env.loop).result()

    def step(self, name: str, answer: object) -> None:
        self.env.tally.steps[name] += 1
        self.env.tally.answers[f"{name} {answer}"] += 1

    def url(self, path: str) -> str:
        return f"{self.env.server.url}{path}"

    @initialize(target=threads)
    def first_thread(self) -> str:
        return self.new_thread_now()

    @rule(target=threads)
    def new_thread(self) -> str:
        return self.new_thread_now()

    def new_thread_now(self) -> str:
        response = self.call(self.env.http.post(self.url("/threads"), json={}, headers=self.headers))
        self.step("new thread", response.status_code)
        assert response.status_code == 201, response.text
        thread_id = str(response.json()["id"])
        self.model_threads[thread_id] = ThreadModel()
        return thread_id

    @rule(
        target=runs,
        thread_id=threads,
        leave=st.sampled_from(["stay", "leave", "leave-cancel"]),
        after=st.integers(1, 5),
    )
    def send(self, thread_id: str, leave: str, after: int) -> Any:
        thread = self.model_threads[thread_id]
        self.sent += 1
        body = {
            "message": f"message {self.sent}",
            "thread_id": thread_id,
            "client_message_id": f"m{self.sent}",
        }
        params = {"on_disconnect": "cancel"} if leave == "leave-cancel" else None
        stream = self.call(
            self._stream("POST", "/chat/stream", {}, body, params, None if leave == "stay" else after)
        )
        self.step(f"send ({leave})", stream.status_code)
        if stream.status_code == 404:
            assert thread.deleted, "404 for a thread that exists"
            return multiple()
        if stream.status_code == 409:
            assert self._maybe_live(thread), "409 with no run in progress in the thread"
            return multiple()
        assert stream.status_code == 200, stream.describe()
        assert not thread.deleted, "a message accepted into a deleted thread"
        run_id = str(stream.first("start")["run_id"])
        run = RunModel(thread_id=thread_id, body=body)
        self._absorb(run, stream)
        thread.accepted.append(body["client_message_id"])
        thread.runs.append(run_id)
        self.model_runs[run_id] = run
        return run_id

    @rule(run_id=runs, back=st.integers(1, 8))
    def resume(self, run_id: str, back: int) -> None:
        run = self.model_runs[run_id]
        # A whole run is resumed from a point `back` events before its end; a left one from where it was left.
        at = max(0, len(run.frames) - 1 - back) if run.complete else len(run.frames) - 1
        headers = {"Last-Event-ID": str(run.ids[at])}
        stream = self.call(self._stream("GET", f"/runs/{run_id}/stream", headers, None, None, None))
        self.step("resume", stream.status_code)
        if self.model_threads[run.thread_id].deleted:
            assert stream.status_code == 404, stream.describe()
            return
        assert stream.status_code == 200, stream.describe()
        if run.complete:
            assert stream.frames == run.frames[at + 1 :], "a resumed replay differs from the live stream"
        else:
            run.frames += stream.frames
            run.ids += [i for i in stream.ids if i is not None]
        self._ended(run, str(stream.done["status"]) if stream.done else "no done")

    @rule(run_id=runs)
    def cancel(self, run_id: str) -> None:
        run = self.model_runs[run_id]
        response = self.call(self.env.http.post(self.url(f"/runs/{run_id}/cancel"), headers=self.headers))
        self.step("cancel", response.status_code)
        if self.model_threads[run.thread_id].deleted:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 200, response.text
        status = response.json()["status"]
        # Cancelling an ended run changes nothing; a live one ends (cancelled, or completed just before).
        assert run.ended is None or status == run.ended, f"cancel turned {run.ended} into {status}"
        self._ended(run, status)

    @rule(run_id=runs)
    def retry(self, run_id: str) -> None:
        run = self.model_runs[run_id]
        stream = self.call(self._stream("POST", "/chat/stream", {}, run.body, None, None))
        self.step("retry", stream.status_code)
        if self.model_threads[run.thread_id].deleted:
            assert stream.status_code == 404, stream.describe()
            return
        assert stream.status_code == 200, stream.describe()
        assert str(stream.first("start")["run_id"]) == run_id, "a retried send started another run"
        assert stream.frames[: len(run.frames)] == run.frames, "a replay differs from the live stream"
        run.frames, run.ids = stream.frames, [i for i in stream.ids if i is not None]
        self._ended(run, str(stream.done["status"]) if stream.done else "no done")

    # A deleted thread leaves the bundle, so examples go on with live threads; the walk below sends to one.
    @rule(target=threads, thread_id=consumes(threads))
    def delete_thread(self, thread_id: str) -> Any:
        thread = self.model_threads[thread_id]
        response = self.call(self.env.http.delete(self.url(f"/threads/{thread_id}"), headers=self.headers))
        self.step("delete thread", response.status_code)
        if thread.deleted:
            assert response.status_code == 404, response.text
            return multiple()
        if response.status_code == 409:
            assert self._maybe_live(thread), "409 with no run in progress in the thread"
            return thread_id
        assert response.status_code == 204, response.text
        thread.deleted = True
        return multiple()

    @invariant()
    def postgres_agrees(self) -> None:
        self.call(self._check(final=False))

    def teardown(self) -> None:
        # Every run ends by itself (the upstream answers every one): wait for it, then check once more.
        self.call(self._settle())
        self.call(self._check(final=True))

    async def _stream(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        leave_after: int | None,
    ) -> SseStream:
        async with open_sse(
            method, self.url(path), headers={**self.headers, **headers}, json=body, params=params
        ) as stream:
            if stream.status_code == 200:
                if leave_after is None:
                    await stream.read_to_done(within_s=STEP_S)
                else:
                    await stream.read_tokens(leave_after, within_s=STEP_S)
        return stream

    def _absorb(self, run: RunModel, stream: SseStream) -> None:
        run.frames = list(stream.frames)
        run.ids = [i for i in stream.ids if i is not None]
        if stream.done is not None:
            self._ended(run, str(stream.done["status"]))

    def _ended(self, run: RunModel, status: str) -> None:
        assert status in PROPER, f"a run ended {status}"
        assert run.ended is None or run.ended == status, f"a run told {run.ended}, then {status}"
        run.ended = status

    def _maybe_live(self, thread: ThreadModel) -> bool:
        return any(self.model_runs[r].ended is None for r in thread.runs)

    async def _settle(self) -> None:
        async def live() -> int:
            count: int = await self.env.db.fetchval(
                "SELECT count(*) FROM runs WHERE user_id = $1 AND status NOT IN"
                " ('completed', 'failed', 'cancelled', 'interrupted', 'timeout')",
                self.user,
            )
            return count

        await eventually(live, lambda n: n == 0, what="every run ending", within_s=STEP_S)

    async def _check(self, *, final: bool) -> None:
        self.env.tally.checks += 1
        db = self.env.db
        messages = await db.fetch(
            "SELECT thread_id::text AS thread_id, seq, role, client_message_id FROM messages"
            " WHERE user_id = $1 ORDER BY thread_id, seq",
            self.user,
        )
        runs = await db.fetch(
            "SELECT r.id::text AS id, r.thread_id::text AS thread_id, r.status, m.content,"
            " (SELECT count(*) FROM usage_events u WHERE u.run_id = r.id) AS usage_rows"
            " FROM runs r JOIN messages m ON m.id = r.assistant_message_id WHERE r.user_id = $1",
            self.user,
        )
        usage = await db.fetch(
            "SELECT run_id::text AS run_id, count(*) AS n FROM usage_events"
            " WHERE user_id = $1 GROUP BY run_id",
            self.user,
        )
        by_thread: dict[str, list[asyncpg.Record]] = {}
        for row in messages:
            by_thread.setdefault(row["thread_id"], []).append(row)
        live_threads = {t for t, model in self.model_threads.items() if not model.deleted}
        assert set(by_thread) <= live_threads, "messages in a thread that is deleted or unknown"
        for thread_id in live_threads:
            rows = by_thread.get(thread_id, [])
            stored = [row["client_message_id"] for row in rows if row["role"] == "user"]
            # No lost and no duplicated message: exactly the accepted ones, once each, in order.
            assert stored == self.model_threads[thread_id].accepted, (thread_id, stored)
            assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1)), "a gap in seq"
            assert [row["role"] for row in rows] == ["user", "assistant"] * (len(rows) // 2)
        known = {r for t in live_threads for r in self.model_threads[t].runs}
        assert {row["id"] for row in runs} == known, "runs Postgres has and the client was not told of"
        live_per_thread = Counter(row["thread_id"] for row in runs if row["status"] not in TERMINAL)
        assert all(n == 1 for n in live_per_thread.values()), f"two live runs in a thread: {live_per_thread}"
        for row in runs:
            run = self.model_runs[row["id"]]
            if row["status"] in TERMINAL:
                assert row["status"] in PROPER, f"run {row['id']} ended {row['status']}"
                assert row["usage_rows"] == 1, f"run {row['id']} ended with {row['usage_rows']} usage rows"
                assert run.ended in (None, row["status"]), f"told {run.ended}, stored {row['status']}"
                saved = row["content"]
                assert saved == REPLY if row["status"] == "completed" else REPLY.startswith(saved), saved
            else:
                assert row["usage_rows"] == 0, f"live run {row['id']} already has a usage row"
                assert not final, f"run {row['id']} never ended"
        # Runs of deleted threads are gone; their usage rows stay, one each.
        counted = {row["run_id"]: row["n"] for row in usage}
        assert set(counted) <= set(self.model_runs), "a usage row for a run the client never started"
        assert all(n == 1 for n in counted.values())
        if final:
            assert set(counted) == set(self.model_runs), "an ended run without its usage row"


def walk_every_rule(machine: Conversations) -> None:
    """One fixed example that takes every rule and every answer a rule expects, checked at each step."""

    def then(value: T) -> T:
        machine.postgres_agrees()
        return value

    try:
        thread = then(machine.first_thread())
        whole = then(machine.send(thread, "stay", 1))
        left = then(machine.send(thread, "leave", 2))
        then(machine.send(thread, "stay", 1))  # 409 while the left run goes on, else accepted
        then(machine.resume(left, 1))
        then(machine.resume(whole, 3))
        then(machine.retry(whole))
        cancelled = then(machine.send(thread, "leave-cancel", 2))
        then(machine.cancel(cancelled))
        then(machine.cancel(cancelled))  # idempotent
        other = then(machine.new_thread())
        lost = then(machine.send(other, "leave", 1))
        then(machine.delete_thread(other))  # 409 while the run goes on, else deleted
        then(machine.cancel(lost))
        then(machine.delete_thread(other))
        then(machine.delete_thread(other))  # 404
        then(machine.send(other, "stay", 1))  # 404
        then(machine.resume(lost, 1))  # 404
        then(machine.retry(lost))  # 404
    finally:
        machine.teardown()


@pytest.fixture(scope="module")
def machine_server(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("state-machine")
    # Limits are not under test: a client that leaves keeps its run going for a moment.
    env = app_env(root / "app", database_url, redis_url, upstream, THREADLINE_MAX_STREAMS_PER_USER="100")
    server = Server("machine", env=env, log_dir=root)
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.terminate()


@pytest.mark.case("state machine")
async def test_conversations_keep_postgres_consistent(
    machine_server: Server, upstream: FakeOpenAI, db: asyncpg.Pool, figures: Figures
) -> None:
    upstream.behaviour = Behaviour(reply=REPLY, gap_s=0.03)
    tally = Tally()
    # Idle connections go before uvicorn's 5 s keep-alive closes them under a request (see test_soak).
    async with httpx.AsyncClient(timeout=STEP_S, limits=httpx.Limits(keepalive_expiry=2.5)) as http:

        class Bound(Conversations):
            env = Env(asyncio.get_running_loop(), machine_server, http, db, tally)

        failure: BaseException | None = None
        try:
            await asyncio.to_thread(walk_every_rule, Bound())
            await asyncio.to_thread(run_state_machine_as_test, Bound, settings=SETTINGS)
        except BaseException as error:
            failure = error
    steps = sum(tally.steps.values())
    figures.record(
        "state machine",
        f"{SETTINGS.max_examples} examples of up to {SETTINGS.stateful_step_count} steps (send whole or "
        "leaving mid-stream, resume with Last-Event-ID, cancel, retry with the same client_message_id, "
        "delete thread) against a live process: after every step and at the end, Postgres holds every "
        "accepted message once, gap-free seq, one usage row per ended run, only completed/cancelled endings",
        f"{tally.examples} examples, {steps} steps, {tally.checks} checks of Postgres, "
        f"{'a violation: ' + str(failure).splitlines()[0][:200] if failure else '0 violations'}; "
        f"answers {dict(sorted(tally.answers.items()))}",
    )
    if failure is not None:
        raise failure

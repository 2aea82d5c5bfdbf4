"""`/metrics`: runs by status, tokens by kind and model, time to first token and latency, live runs and
SSE clients, in Prometheus' text format."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AuthHeaders
from tests.support.accounting import Client, in_threads, unique
from tests.support.fake_openai import Behaviour, FakeOpenAI

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_run_is_counted_by_status_tokens_and_timings(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="three little words")
    model = "gpt-4o-mini"
    before = await scrape(client)
    await client.post("/chat/stream", json={"message": "count me"}, headers=auth(user))
    upstream.behaviour = Behaviour(fail_status=500)
    await client.post("/chat", json={"message": "fail me"}, headers=auth(user))
    await asyncio.sleep(0.2)  # the run task records its end just after its last event
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    reported = upstream.reported_usage[-1]
    assert delta("threadline_runs_total", status="completed", model=model) == 1
    assert delta("threadline_runs_total", status="failed", model=model) == 1
    measured = {"model": model, "source": "measured"}
    assert delta("threadline_tokens_total", kind="prompt", **measured) == reported["prompt_tokens"]
    assert delta("threadline_tokens_total", kind="completion", **measured) == reported["completion_tokens"]
    assert delta("threadline_run_ttft_seconds_count", model=model) == 1
    assert delta("threadline_run_latency_seconds_count", model=model) == 2
    assert delta("threadline_run_ttft_seconds_sum", model=model) > 0
    assert value(after, "threadline_active_runs") == value(before, "threadline_active_runs")
    assert value(after, "threadline_sse_clients") == value(before, "threadline_sse_clients")


async def test_live_runs_and_connected_stream_clients_are_gauged(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    upstream.behaviour = Behaviour(reply="slow " * 20, gap_s=0.1)
    idle = await scrape(client)
    async with in_threads(client) as post:
        streaming = post("/chat/stream", {"message": unique("gauge")}, auth(user))
        await upstream.wait_for(lambda: upstream.active_streams > 0)
        await asyncio.sleep(0.2)
        live = await scrape(client)
        await streaming
    assert value(live, "threadline_active_runs") == value(idle, "threadline_active_runs") + 1
    assert value(live, "threadline_sse_clients") == value(idle, "threadline_sse_clients") + 1
    # The run task lets go a moment after its last event has gone out.
    for _ in range(50):
        done = await scrape(client)
        if value(done, "threadline_active_runs") == value(idle, "threadline_active_runs"):
            break
        await asyncio.sleep(0.05)
    assert value(done, "threadline_active_runs") == value(idle, "threadline_active_runs")
    assert value(done, "threadline_sse_clients") == value(idle, "threadline_sse_clients")

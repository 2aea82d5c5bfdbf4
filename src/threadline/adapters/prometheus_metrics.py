"""`PrometheusMetrics`: runs, tokens, timings and SSE clients for `/metrics` (prometheus_client).

The metrics are created once per process in the default registry, which Litestar's
PrometheusController serves; every app built in the process (tests build several) shares them.
Each process is scraped on its own: several workers on one host each answer `/metrics`.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram

from threadline.ports import RunOutcome

TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

ACTIVE_RUNS = Gauge("threadline_active_runs", "Runs this process is executing now.")
RUNS = Counter("threadline_runs", "Runs ended, by final status and model.", ["status", "model"])
TOKENS = Counter(
    "threadline_tokens",
    "Tokens of ended runs, by kind (prompt, completion, cached, reasoning), model and source.",
    ["kind", "model", "source"],
)
TTFT = Histogram(
    "threadline_run_ttft_seconds",
    "Time from a run's start to its first token.",
    ["model"],
    buckets=TTFT_BUCKETS,
)
LATENCY = Histogram(
    "threadline_run_latency_seconds",
    "Time from a run's start to its end.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
SSE_CLIENTS = Gauge("threadline_sse_clients", "Server-Sent Events responses being streamed now.")
EVENT_LOOP_TASKS = Gauge(
    "threadline_event_loop_tasks", "asyncio tasks alive in the event loop that serves /metrics."
)


def _event_loop_tasks() -> float:
    # Read at scrape time; Litestar serves /metrics from the app's event loop.
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped from a thread without a running loop
        return float("nan")


EVENT_LOOP_TASKS.set_function(_event_loop_tasks)


class PrometheusMetrics:
    """The `RunMetrics` port: a handful of increments per run and per stream, none per token."""

    def run_started(self) -> None:
        ACTIVE_RUNS.inc()

    def run_stopped(self) -> None:
        ACTIVE_RUNS.dec()

    def run_recorded(self, outcome: RunOutcome) -> None:
        usage, model = outcome.usage, outcome.model
        RUNS.labels(outcome.status.value, model).inc()
        for kind, count in (
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if count:
                TOKENS.labels(kind, model, usage.source).inc(count)
        if outcome.ttft_ms is not None:
            TTFT.labels(model).observe(outcome.ttft_ms / 1000)
        if outcome.latency_ms:
            LATENCY.labels(model).observe(outcome.latency_ms / 1000)

    def stream_opened(self) -> None:
        SSE_CLIENTS.inc()

    def stream_closed(self) -> None:
        SSE_CLIENTS.dec()

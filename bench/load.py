"""The load generator: N concurrent SSE streams against Threadline or the upstream directly, as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import msgspec
import uvloop

from bench.sse_client import Protocol, Reply, request_bytes, stream_once
from threadline.http.auth import issue_token

QUESTION = "Tell me about streaming chat backends."
# Percentiles reported for every distribution.
PERCENTILES = (50, 95, 99)


class Distribution(msgspec.Struct, frozen=True):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None, None)
        ordered = sorted(values)
        p50, p95, p99 = (percentile(ordered, p) for p in PERCENTILES)
        return cls(len(ordered), p50, p95, p99, sum(ordered) / len(ordered))


class LoadResult(msgspec.Struct, frozen=True):
    target: str
    streams: int
    replies: int
    errors: int
    error_samples: list[str]
    tokens: int
    wall_s: float
    tokens_per_s: float
    ttft_ms: Distribution
    gap_ms: Distribution
    reply_ms: Distribution


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    host: str
    port: int
    secret: str | None

    def request(self, stream: int, run_tag: str) -> bytes:
        host = f"{self.host}:{self.port}"
        if self.name == "direct":
            body = {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": QUESTION}],
            }
            headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
            return request_bytes("POST", "/v1/chat/completions", host, msgspec.json.encode(body), headers)
        assert self.secret is not None
        token = issue_token(self.secret, f"bench-{run_tag}-{stream}", ttl=timedelta(hours=2))
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
        }
        message = msgspec.json.encode({"message": QUESTION})
        return request_bytes("POST", "/chat/stream", host, message, headers)

    @property
    def protocol(self) -> Protocol:
        return Protocol.upstream() if self.name == "direct" else Protocol.threadline()


async def _user(target: Target, stream: int, run_tag: str, replies: int, deadline: float) -> list[Reply]:
    """One simulated user: `replies` replies back to back, each on a new connection."""
    done: list[Reply] = []
    for _ in range(replies):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        request = target.request(stream, run_tag)
        done.append(
            await stream_once(target.host, target.port, request, target.protocol, timeout_s=remaining)
        )
    return done


async def run(target: Target, *, streams: int, replies: int, time_limit_s: float) -> LoadResult:
    run_tag = uuid.uuid4().hex[:8]
    deadline = time.monotonic() + time_limit_s
    started = time.perf_counter()
    users = [_user(target, i, run_tag, replies, deadline) for i in range(streams)]
    results = [reply for user in await asyncio.gather(*users) for reply in user]
    ended = max((r.ended_at for r in results if r.ended_at is not None), default=time.perf_counter())
    wall = ended - started
    failed = [r for r in results if r.error is not None]
    # Replies that never started count as errors too: a time limit cut them off.
    missing = streams * replies - len(results)
    tokens = sum(len(r.token_times) for r in results)
    ok = [r for r in results if r.error is None]
    return LoadResult(
        target=target.name,
        streams=streams,
        replies=len(results),
        errors=len(failed) + missing,
        error_samples=sorted({str(r.error) for r in failed})[:5]
        + ([f"{missing} not started"] if missing else []),
        tokens=tokens,
        wall_s=wall,
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        ttft_ms=Distribution.of([r.ttft * 1000 for r in ok if r.ttft is not None]),
        gap_ms=Distribution.of([g * 1000 for r in ok for g in r.gaps]),
        reply_ms=Distribution.of([r.total * 1000 for r in ok if r.total is not None]),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", choices=["threadline", "direct"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", help="Threadline's JWT secret (target threadline)")
    p.add_argument("--streams", type=int, required=True)
    p.add_argument("--replies", type=int, default=3, help="replies per stream, back to back")
    p.add_argument("--time-limit", type=float, default=120.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    target = Target(args.target, args.host, args.port, args.secret)
    result = uvloop.run(run(target, streams=args.streams, replies=args.replies, time_limit_s=args.time_limit))
    sys.stdout.write(json.dumps(msgspec.to_builtins(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

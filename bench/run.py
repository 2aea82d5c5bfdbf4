"""`make bench`: starts every process, runs each level direct and through Threadline, writes the report."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import psutil

from bench import history, profile, report
from bench.load import LoadResult
from bench.processes import Child, Meter, free_port, threadline, upstream
from threadline.embedded import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Replies per stream at each level: enough replies for stable percentiles, bounded in time.
REPLIES = {1: 10, 50: 4, 200: 3, 1000: 3}
LEVEL_TIME_LIMIT_S = 180.0
JWT_SECRET = "bench-secret-" + "x" * 40


class Level(msgspec.Struct, frozen=True):
    streams: int
    load: LoadResult
    app_cpu_s: float
    postgres_cpu_s: float
    redis_cpu_s: float
    peak_rss: int
    peak_process_rss: int


class Config(msgspec.Struct, frozen=True):
    name: str
    workers: int | None
    levels: list[Level]


class Machine(msgspec.Struct, frozen=True):
    load_average: str
    cores: int
    ram_gib: float
    cpu: str
    python: str
    os: str
    date: str


class Results(msgspec.Struct, frozen=True):
    machine: Machine
    reply_tokens: int
    ttft_ms: float
    gap_ms: float
    configs: list[Config]
    history: history.HistoryResult | None
    search: str
    profile: profile.Profile | None
    profile_level: int | None


def machine() -> Machine:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    # The machine may be shared: the 1, 5 and 15 minute load averages as the run ends say how much.
    return Machine(
        load_average=" / ".join(f"{x:.1f}" for x in os.getloadavg()),
        cores=psutil.cpu_count() or 0,
        ram_gib=round(psutil.virtual_memory().total / 2**30, 1),
        cpu=model,
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def run_load(target: str, port: int, streams: int, replies: int) -> LoadResult:
    """The load generator as a process of its own, so its CPU is never the server's."""
    argv = [
        sys.executable, "-m", "bench.load", "--target", target, "--port", str(port),
        "--streams", str(streams), "--replies", str(replies), "--time-limit", str(LEVEL_TIME_LIMIT_S),
        "--secret", JWT_SECRET,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, check=True, timeout=LEVEL_TIME_LIMIT_S + 60, cwd=ROOT)
    return msgspec.json.decode(done.stdout.splitlines()[-1], type=LoadResult)


def measure(target: str, port: int, streams: int, pids: dict[str, int]) -> Level:
    with Meter(pids) as meter:
        load = run_load(target, port, streams, REPLIES.get(streams, 3))
    return Level(
        streams=streams,
        load=load,
        app_cpu_s=meter.cpu.get("app", 0.0),
        postgres_cpu_s=meter.cpu.get("postgres", 0.0),
        redis_cpu_s=meter.cpu.get("redis", 0.0),
        peak_rss=meter.peak_rss.get("app", 0),
        peak_process_rss=meter.peak_process_rss.get("app", 0),
    )


def server_settings(
    database_url: str, redis_url: str, upstream_url: str, workers: int, data_dir: Path
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": upstream_url,
        "OPENAI_API_KEY": "bench",
        "THREADLINE_JWT_SECRET": JWT_SECRET,
        "THREADLINE_WORKERS": str(workers),
        "THREADLINE_DATA_DIR": str(data_dir),
        "THREADLINE_LOG_LEVEL": "WARNING",
        "THREADLINE_MODEL_MAX_RETRIES": "0",
        # The benchmark measures streaming, not the per-user limits it would otherwise trip.
        "THREADLINE_RATE_LIMIT": "1000000/minute",
    }


def profiled_level(server: Child, port: int, streams: int, out: Path) -> profile.Profile | None:
    """The level once more under py-spy, on the process that serves (one worker: the serve process)."""
    if not profile.available():
        print("py-spy is not installed: no profile", file=sys.stderr)
        return None
    duration = 3 * 3 + 6  # three replies of ~2.2 s each, the ramp and slack
    sampler = profile.record(server.pid, out, duration_s=duration)
    time.sleep(1.0)
    run_load("threadline", port, streams, REPLIES.get(streams, 3))
    sampler.wait(duration + 30)
    return profile.summarise(out) if out.exists() else None


def search_status(port: int) -> str:
    schema = httpx.get(f"http://127.0.0.1:{port}/schema/openapi.json", timeout=10).json()
    if "/search" in schema.get("paths", {}):
        return "measured by `make bench-memory`: see the Memory section"
    return "not measured: GET /search is not in the API yet"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--levels", default="1,50,200,1000")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--history-messages", type=int, default=100_000)
    p.add_argument("--history-requests", type=int, default=200)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    worker_counts = [int(x) for x in args.workers.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="threadline-bench-"))
    log_dir = RESULTS / "logs"
    log_dir.mkdir(exist_ok=True)
    tokens, ttft_ms, gap_ms = 50, 200.0, 40.0
    postgres, redis = EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)
    try:
        database_url, redis_url = postgres.start(), redis.start()
        assert postgres.pid is not None
        assert redis.pid is not None
        backing = {"postgres": postgres.pid, "redis": redis.pid}
        up_port = free_port()
        with upstream(up_port, log_dir, tokens=tokens, ttft_ms=ttft_ms, gap_ms=gap_ms) as fake:
            configs = [
                Config("direct", None, [measure("direct", up_port, n, {"app": fake.pid}) for n in levels])
            ]
            print(f"direct: {[round(level.load.tokens_per_s) for level in configs[0].levels]} tokens/s")
            history_result, search, hot, hot_level = None, "not measured", None, None
            for workers in worker_counts:
                port = free_port()
                settings = server_settings(
                    database_url, redis_url, f"http://127.0.0.1:{up_port}/v1", workers, data_dir / "app"
                )
                with threadline(settings, port, log_dir, f"threadline-{workers}w") as server:
                    run_load("threadline", port, 10, 1)  # warm-up, not recorded
                    pids = {"app": server.pid, **backing}
                    measured = [measure("threadline", port, n, pids) for n in levels]
                    configs.append(
                        Config(f"threadline, {workers} worker{'s' * (workers > 1)}", workers, measured)
                    )
                    rates = [round(level.load.tokens_per_s) for level in measured]
                    print(f"{workers} worker(s): {rates} tokens/s")
                    if workers == 1:
                        if not args.no_profile:
                            hot_level = max(levels)
                            hot = profiled_level(server, port, hot_level, RESULTS / "profile-1w.txt")
                        result = asyncio.run(
                            history.measure(
                                database_url, port, JWT_SECRET,
                                messages=args.history_messages, requests=args.history_requests,
                            )
                        )  # fmt: skip
                        history_result = result
                        search = search_status(port)
        results = Results(
            machine=machine(), reply_tokens=tokens, ttft_ms=ttft_ms, gap_ms=gap_ms, configs=configs,
            history=history_result, search=search, profile=hot, profile_level=hot_level,
        )  # fmt: skip
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    (RESULTS / "latest.json").write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    report.rewrite(args.doc, report.render(msgspec.to_builtins(results)))
    print(f"wrote {args.doc} and {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())

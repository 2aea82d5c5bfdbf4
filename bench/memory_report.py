"""The memory benchmark's results, as JSON and as the tables of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

import msgspec

from bench.load import Distribution
from bench.memory_seed import HEAVY_USER

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
TARGET_MESSAGES = 1_000_000
TARGET_EF_SEARCH = 100
TARGET_P95_MS = 20.0
TARGET_RECALL = 0.95


class Quality(msgspec.Struct, frozen=True):
    embedder: str
    corpus: str
    recall_at_1: float
    recall_at_5: float
    embed_ms_per_message: float


class Latency(msgspec.Struct, frozen=True):
    messages: int
    user: str
    user_messages: int
    ef_search: int
    recall_ms: Distribution
    recall_vs_exact: float
    search_ms: Distribution


class Size(msgspec.Struct, frozen=True):
    messages: int
    seed: dict[str, float]
    latencies: list[Latency]


class MemoryResults(msgspec.Struct, frozen=True):
    quality: list[Quality]
    sizes: list[Size]
    hash_embed_ms: float
    # The machine's 1-minute load average before and after: latencies mean little on a busy machine.
    load_before: float = 0.0
    load_after: float = 0.0


def quality_table(results: MemoryResults) -> str:
    lines = ["| embedder | corpus | recall@1 | recall@5 | embed ms/message |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {q.embedder} | {q.corpus} | {q.recall_at_1:.2f} | {q.recall_at_5:.2f} | "
        f"{q.embed_ms_per_message:.3f} |"
        for q in results.quality
    ]
    return "\n".join(lines)


def latency_table(results: MemoryResults) -> str:
    lines = ["| stored messages | user (their messages) | ef_search | top-10 recall p50 / p95 ms | "
             "recall vs exact | search p50 / p95 ms |", "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for size in results.sizes:
        for item in size.latencies:
            lines.append(
                f"| {size.messages:,} | {item.user} ({item.user_messages:,}) | {item.ef_search} | "
                f"{item.recall_ms.p50:.2f} / {item.recall_ms.p95:.2f} | {item.recall_vs_exact:.3f} | "
                f"{item.search_ms.p50:.2f} / {item.search_ms.p95:.2f} |"
            )
    lines += ["", "| stored messages | insert s | GIN build s | HNSW build s |", "|---:|---:|---:|---:|"]
    lines += [
        f"| {s.messages:,} | {s.seed['insert_s']:.0f} | {s.seed['gin_build_s']:.0f} | "
        f"{s.seed['hnsw_build_s']:.0f} |"
        for s in results.sizes
        if s.seed
    ]
    lines += [
        "",
        f"Hashing a question: {results.hash_embed_ms:.3f} ms. Load average of the machine during the run: "
        f"{results.load_before:.1f} before, {results.load_after:.1f} after (2 cores).",
    ]
    return "\n".join(lines)


def merged(parts: list[MemoryResults]) -> MemoryResults:
    """Several runs' results as one (a quality-only run and a latency run, say)."""
    return MemoryResults(
        quality=[q for part in parts for q in part.quality],
        sizes=[size for part in parts for size in part.sizes],
        hash_embed_ms=max(part.hash_embed_ms for part in parts),
        load_before=max(part.load_before for part in parts),
        load_after=max(part.load_after for part in parts),
    )


def retrieval_target(path: Path = RESULTS) -> tuple[str, bool | None]:
    """The design's target row: top-10 recall at 1M stored messages, p95 under 20 ms, recall ≥ 0.95
    against exact search, for the heavy user (the HNSW path) at the default ef_search."""
    if not path.exists():
        return "not measured: `make bench-memory`", None
    results = msgspec.json.decode(path.read_bytes(), type=MemoryResults)
    found = [
        item
        for size in results.sizes
        if size.messages >= TARGET_MESSAGES
        for item in size.latencies
        if item.user == HEAVY_USER and item.ef_search == TARGET_EF_SEARCH
    ]
    if not found or found[0].recall_ms.p95 is None:
        return "not measured at 1M: `make bench-memory`", None
    p95, recall = found[0].recall_ms.p95, found[0].recall_vs_exact
    return (
        f"{p95:.1f} ms / {recall:.3f} (`make bench-memory`)",
        p95 < TARGET_P95_MS and recall >= TARGET_RECALL,
    )

"""Renders measured results as the tables of docs/benchmarks.md, replacing only the marked regions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.memory_report import retrieval_target

MB = 1024 * 1024
# Targets from DESIGN.md, for one worker.
TOKENS_RATIO = 0.9
TTFT_P99_SLACK_MS = 150.0
GAP_P99_MS = 80.0
CPU_PER_REPLY_MS = 5.0
RSS_MB = 300.0
TTFT_ONE_STREAM_SLACK_MS = 5.0
HISTORY_P95_MS = 5.0


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base else "–"


def _level(config: dict[str, Any], streams: int) -> dict[str, Any] | None:
    return next((level for level in config["levels"] if level["streams"] == streams), None)


def machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    return "\n".join([
        "| machine | |",
        "|---|---|",
        f"| cores | {m['cores']} ({m['cpu']}) |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| Python | {m['python']} |",
        f"| OS | {m['os']} |",
        f"| measured | {m['date']} |",
        f"| load average at the end (1 / 5 / 15 min) | {m.get('load_average', '–')} |",
        f"| upstream | {results['reply_tokens']} tokens per reply, {results['ttft_ms']:.0f} ms to the first, "
        f"{results['gap_ms']:.0f} ms between tokens |",
    ])  # fmt: skip


def streams(results: dict[str, Any]) -> str:
    direct = results["configs"][0]
    rows = [
        "| streams | config | tokens/s | × direct | TTFT p50 / p95 / p99 ms | gap p50 / p95 / p99 ms "
        "| reply p50 / p99 ms | errors | app CPU ms/reply | PG + Redis CPU ms/reply | peak RSS MB |",
        "|---:|---|---:|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for level in direct["levels"]:
        n = level["streams"]
        base = level["load"]["tokens_per_s"]
        for config in results["configs"]:
            found = _level(config, n)
            if found is None:
                continue
            load = found["load"]
            t, g, r = load["ttft_ms"], load["gap_ms"], load["reply_ms"]
            replies = max(1, load["replies"] - load["errors"])
            is_direct = config["workers"] is None
            app_cpu = "–" if is_direct else f"{found['app_cpu_s'] * 1000 / replies:.1f}"
            backing = (
                "–"
                if is_direct
                else f"{(found['postgres_cpu_s'] + found['redis_cpu_s']) * 1000 / replies:.1f}"
            )
            rss = "–" if is_direct else f"{found['peak_rss'] / MB:.0f}"
            rows.append(
                f"| {n} | {config['name']} | {load['tokens_per_s']:.0f} "
                f"| {_ratio(load['tokens_per_s'], base)} "
                f"| {_ms(t['p50'])} / {_ms(t['p95'])} / {_ms(t['p99'])} "
                f"| {_ms(g['p50'])} / {_ms(g['p95'])} / {_ms(g['p99'])} "
                f"| {_ms(r['p50'])} / {_ms(r['p99'])} | {load['errors']} | {app_cpu} | {backing} | {rss} |"
            )
    return "\n".join(rows)


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else "**met**" if ok else "**not met**"


def targets(results: dict[str, Any]) -> str:
    direct = results["configs"][0]
    one = next((c for c in results["configs"] if c["workers"] == 1), None)
    rows = ["| target (1 worker) | required | measured | |", "|---|---|---|---|"]
    top = max(level["streams"] for level in direct["levels"])
    d, t = _level(direct, top), _level(one, top) if one else None
    if d and t:
        dl, tl = d["load"], t["load"]
        replies = max(1, tl["replies"] - tl["errors"])
        cpu = t["app_cpu_s"] * 1000 / replies
        ratio = tl["tokens_per_s"] / dl["tokens_per_s"]
        ttft_limit = (dl["ttft_ms"]["p99"] or 0) + TTFT_P99_SLACK_MS
        ttft = tl["ttft_ms"]["p99"]
        gap = tl["gap_ms"]["p99"]
        rss = t["peak_rss"] / MB
        rows += [
            f"| tokens/s at {top} streams | ≥ {TOKENS_RATIO}× direct | {ratio:.2f}× "
            f"| {_verdict(ratio >= TOKENS_RATIO)} |",
            f"| p99 time to first token at {top} "
            f"| ≤ direct + {TTFT_P99_SLACK_MS:.0f} ms = {ttft_limit:.0f} ms "
            f"| {_ms(ttft)} ms | {_verdict(None if ttft is None else ttft <= ttft_limit)} |",
            f"| p99 gap between tokens at {top} | < {GAP_P99_MS:.0f} ms | {_ms(gap)} ms "
            f"| {_verdict(None if gap is None else gap < GAP_P99_MS)} |",
            f"| errors at {top} | 0 | {tl['errors']} | {_verdict(tl['errors'] == 0)} |",
            f"| server CPU per reply at {top} | < {CPU_PER_REPLY_MS:.0f} ms | {cpu:.1f} ms "
            f"| {_verdict(cpu < CPU_PER_REPLY_MS)} |",
            f"| peak resident memory at {top} | < {RSS_MB:.0f} MB | {rss:.0f} MB "
            f"| {_verdict(rss < RSS_MB)} |",
        ]  # fmt: skip
    d1, t1 = _level(direct, 1), _level(one, 1) if one else None
    if d1 and t1:
        base, measured = d1["load"]["ttft_ms"]["p50"], t1["load"]["ttft_ms"]["p50"]
        if base is not None and measured is not None:
            limit = base + TTFT_ONE_STREAM_SLACK_MS
            rows.append(
                f"| time to first token at 1 stream (p50) | ≤ direct + {TTFT_ONE_STREAM_SLACK_MS:.0f} ms "
                f"= {limit:.1f} ms | {measured:.1f} ms | {_verdict(measured <= limit)} |"
            )
    found = results.get("history")
    if found:
        p95 = found["latency_ms"]["p95"]
        rows.append(
            f"| history page from a {found['messages']:,}-message thread, p95 | < {HISTORY_P95_MS:.0f} ms "
            f"| {_ms(p95)} ms | {_verdict(None if p95 is None else p95 < HISTORY_P95_MS)} |"
        )
    retrieval, met = retrieval_target()
    rows.append(
        f"| top-10 retrieval at 1M messages, p95 / recall | < 20 ms / ≥ 0.95 | {retrieval} "
        f"| {_verdict(met)} |"
    )
    return "\n".join(rows)


def history_table(results: dict[str, Any]) -> str:
    found = results.get("history")
    if not found:
        return "Not measured in this run."
    d = found["latency_ms"]
    return "\n".join([
        "| messages in the thread | seeded in | requests | errors | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {found['messages']:,} | {found['seed_s']:.1f} s | {found['requests']} | {found['errors']} "
        f"| {d['p50']:.2f} | {d['p95']:.2f} | {d['p99']:.2f} |",
    ])  # fmt: skip


def profile_table(results: dict[str, Any]) -> str:
    found = results.get("profile")
    if not found or not found["samples"]:
        return "No profile in this run (py-spy missing, or `--no-profile`)."
    lines = [
        f"py-spy, {found['samples']} samples of the worker's event loop thread at "
        f"{results['profile_level']} streams (raw stacks: `{Path(found['raw_path']).name}` in "
        "bench/results/).",
        "",
        "| where the time goes (innermost known package) | share |",
        "|---|---:|",
        *(f"| {h['function']} | {h['share']:.0%} |" for h in found["by_package"]),
        "",
        "| hottest functions (self time) | share |",
        "|---|---:|",
        *(f"| `{h['function']}` | {h['share']:.1%} |" for h in found["self_time"][:12]),
    ]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> dict[str, str]:
    return {
        "machine": machine(results),
        "streams": streams(results),
        "targets": targets(results),
        "history": history_table(results),
        "profile": profile_table(results),
    }


def rewrite(doc: Path, regions: dict[str, str]) -> None:
    """Replace each `<!-- bench:NAME -->` … `<!-- /bench:NAME -->` region; the prose around stays."""
    text = doc.read_text() if doc.exists() else ""
    for name, body in regions.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        block = f"{start}\n{body}\n{end}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(block.replace("\\", "\\\\"), text)
        else:
            text += f"\n## {name}\n\n{block}\n"
    doc.write_text(text)

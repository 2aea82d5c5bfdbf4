"""`threadline reembed`: every message's vector from the configured embedder, with a progress bar.

Resumable by construction: each run walks the messages by id and embeds only those whose vector is
missing or from another embedder, so an interrupted run loses at most its current batch. A change
of dimension first empties the vector column (old vectors cannot be compared with new ones anyway),
retypes it and drops the HNSW index; the index is rebuilt once the vectors are back, which is much
faster than growing it row by row.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import TextIO

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from threadline.adapters.openai_chat import create_client
from threadline.db.database import Database
from threadline.db.embeddings import PostgresEmbeddings
from threadline.db.pool import create_pool
from threadline.memory import create_embedder
from threadline.service.memory import MAX_EMBEDDED_CHARS
from threadline.settings import Settings

log = logging.getLogger("threadline.reembed")
# DDL and the index build take minutes on millions of rows, far beyond the app's statement timeout.
LONG_COMMAND_S = 3_600.0


class ReembedReport(msgspec.Struct, frozen=True, kw_only=True):
    embedder: str
    dim: int
    dim_changed: bool
    embedded: int
    remaining: int
    index_built: bool
    seconds: float


async def reembed(
    database_url: str,
    settings: Settings,
    *,
    batch_size: int | None = None,
    limit: int | None = None,
    output: TextIO = sys.stderr,
) -> ReembedReport:
    """Embed every message that lacks a vector from the configured embedder (at most `limit` now)."""
    started = time.monotonic()
    database_settings = msgspec.structs.replace(
        settings.database, pool_min=1, pool_max=2, command_timeout_s=LONG_COMMAND_S
    )
    pool = await create_pool(database_url, database_settings)
    client = create_client(settings.model) if settings.memory.embedder == "openai" else None
    embedder = create_embedder(settings, client)
    batch = batch_size or settings.memory.embedding_batch
    console = Console(file=output, stderr=output is sys.stderr)
    try:
        store = PostgresEmbeddings(Database(pool, acquire_timeout_s=settings.database.acquire_timeout_s))
        stored_dim = await store.column_dim()
        dim_changed = stored_dim != embedder.dim
        if dim_changed:
            console.print(
                f"vector({stored_dim}) → vector({embedder.dim}): clearing old vectors, dropping the index"
            )
            await store.change_dim(embedder.dim)
        total = await store.count_stale(embedder.name)
        goal = total if limit is None else min(total, limit)
        console.print(
            f"{embedder.name}: {total} message(s) to embed" + ("" if goal == total else f", {goal} now")
        )
        done, after = 0, uuid.UUID(int=0)
        with _progress(console) as progress:
            task = progress.add_task("embedding", total=goal)
            while done < goal:
                pending = await store.stale_after(embedder.name, after, min(batch, goal - done))
                if not pending:
                    break
                vectors = await embedder.embed([m.content[:MAX_EMBEDDED_CHARS] for m in pending])
                await store.save(embedder.name, [(m.id, v) for m, v in zip(pending, vectors, strict=True)])
                done, after = done + len(pending), pending[-1].id
                progress.advance(task, len(pending))
        remaining = total - done
        index_built = False
        if remaining == 0 and not await store.index_exists():
            console.print("building the HNSW index …")
            await store.build_index()
            index_built = True
        report = ReembedReport(
            embedder=embedder.name, dim=embedder.dim, dim_changed=dim_changed, embedded=done,
            remaining=remaining, index_built=index_built, seconds=round(time.monotonic() - started, 1),
        )  # fmt: skip
        console.print(
            f"reembedded {done} message(s) with {embedder.name} in {report.seconds}s"
            + (f"; {remaining} left: run `threadline reembed` again" if remaining else "")
        )
        return report
    finally:
        await pool.close()
        if client is not None:
            await client.close()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )

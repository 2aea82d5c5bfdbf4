"""`BatchingEmbedder`: concurrent `embed` calls share requests to the embedder behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from threadline.ports import Embedder, EmbeddingError

_Pending = tuple[str, "asyncio.Future[list[float]]"]


class BatchingEmbedder:
    """The `Embedder` port over another one, sending what concurrent callers ask for together.

    Every run embeds its question before its first token, and every finished run queues its
    messages for embedding: at hundreds of concurrent streams that is hundreds of HTTP requests a
    second, each costing the process about a millisecond of CPU. Here at most `concurrency`
    requests are in flight; texts asked for meanwhile wait and go out together in the next one,
    up to `batch_size` texts. An idle process sends each call at once, so a lone run waits for
    nothing; a busy one sends fewer, larger requests. A caller that gives up (its timeout) leaves
    its texts out of the request if it has not gone yet.
    """

    def __init__(self, inner: Embedder, *, batch_size: int, concurrency: int = 2) -> None:
        self._inner = inner
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._waiting: list[_Pending] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self.name = inner.name
        self.dim = inner.dim

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self._waiting.extend(zip(texts, futures, strict=True))
        self._dispatch()
        return list(await asyncio.gather(*futures))

    def _dispatch(self) -> None:
        while self._waiting and len(self._in_flight) < self._concurrency:
            batch = [item for item in self._waiting[: self._batch_size] if not item[1].done()]
            del self._waiting[: self._batch_size]
            if not batch:
                continue
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._dispatch()

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            vectors = await self._inner.embed([text for text, _ in batch])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    # One exception each: an exception raised in several tasks tangles its traceback.
                    failure = EmbeddingError(str(error) if isinstance(error, EmbeddingError) else repr(error))
                    failure.__cause__ = error
                    future.set_exception(failure)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), vector in zip(batch, vectors, strict=True):
            if not future.done():
                future.set_result(vector)

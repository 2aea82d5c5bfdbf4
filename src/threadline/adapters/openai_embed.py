"""`OpenAIEmbedder`: any OpenAI-compatible `/v1/embeddings` endpoint, in batches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import openai
from openai import AsyncOpenAI

from threadline.ports import EmbeddingError

# The API refuses empty inputs; a space embeds as "nothing" and keeps the positions aligned.
EMPTY_INPUT = " "


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise EmbeddingError("the embedder returned a zero or non-finite vector")
    return [x / norm for x in vector]


class OpenAIEmbedder:
    """The `Embedder` port over `AsyncOpenAI.embeddings`: `dimensions` shortens the vectors server-side
    (text-embedding-3 and other Matryoshka models), `encoding_format="float"` keeps them readable."""

    def __init__(
        self, client: AsyncOpenAI, *, model: str, dim: int, batch_size: int, timeout_s: float
    ) -> None:
        self._client = client
        self._model = model
        self._batch_size = batch_size
        self._timeout_s = timeout_s
        self.dim = dim
        self.name = f"openai:{model}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(await self._batch(texts[start : start + self._batch_size]))
        return vectors

    async def _batch(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            response = await self._client.embeddings.create(
                model=self._model,
                input=[text if text.strip() else EMPTY_INPUT for text in texts],
                dimensions=self.dim,
                encoding_format="float",
                timeout=self._timeout_s,
            )
        except openai.OpenAIError as error:
            raise EmbeddingError(f"{self.name}: {error}") from error
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(texts):
            raise EmbeddingError(f"{self.name} returned {len(data)} vectors for {len(texts)} texts")
        for item in data:
            if len(item.embedding) != self.dim:
                raise EmbeddingError(
                    f"{self.name} returned {len(item.embedding)} numbers, not {self.dim}: set "
                    "THREADLINE_EMBEDDING_DIM to the model's size if it ignores `dimensions`"
                )
        # Most servers return unit vectors; some (local ones) do not, and cosine scores should compare.
        return [unit(item.embedding) for item in data]

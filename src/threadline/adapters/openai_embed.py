"""`OpenAIEmbedder`: any OpenAI-compatible `/v1/embeddings` endpoint, in batches."""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from collections.abc import Sequence

import msgspec
import openai
from openai import AsyncOpenAI

from threadline.ports import EmbeddingError

# The API refuses empty inputs; a space embeds as "nothing" and keeps the positions aligned.
EMPTY_INPUT = " "


class _Item(msgspec.Struct):
    index: int
    # base64 of little-endian float32s when asked for; servers that ignore the ask send numbers.
    embedding: list[float] | str


class _Embeddings(msgspec.Struct):
    data: list[_Item]


_decode = msgspec.json.Decoder(_Embeddings).decode


def floats(embedding: list[float] | str) -> list[float]:
    """A vector as the response gave it: numbers, or base64 of little-endian float32s."""
    if isinstance(embedding, list):
        return embedding
    vector = array.array("f")
    try:
        vector.frombytes(base64.b64decode(embedding, validate=True))
    except (binascii.Error, ValueError) as error:
        raise EmbeddingError(f"the embedder returned an unreadable vector: {error}") from error
    if sys.byteorder == "big":
        vector.byteswap()
    return vector.tolist()


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise EmbeddingError("the embedder returned a zero or non-finite vector")
    return [x / norm for x in vector]


class OpenAIEmbedder:
    """The `Embedder` port over `AsyncOpenAI.embeddings`: `dimensions` shortens the vectors server-side
    (text-embedding-3 and other Matryoshka models).

    Vectors are asked for as base64 (as the SDK itself does) and the raw body is decoded here with
    msgspec: measured on this machine, the SDK's parsing into pydantic models cost more CPU than
    the HTTP call itself, and base64 is a third the size of the numbers written out.
    """

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
            response = await self._client.embeddings.with_raw_response.create(
                model=self._model,
                input=[text if text.strip() else EMPTY_INPUT for text in texts],
                dimensions=self.dim,
                encoding_format="base64",
                timeout=self._timeout_s,
            )
            data = sorted(_decode(response.content).data, key=lambda item: item.index)
        except openai.OpenAIError as error:
            raise EmbeddingError(f"{self.name}: {error}") from error
        except msgspec.DecodeError as error:
            raise EmbeddingError(f"{self.name} answered with an unexpected body: {error}") from error
        if len(data) != len(texts):
            raise EmbeddingError(f"{self.name} returned {len(data)} vectors for {len(texts)} texts")
        vectors = [floats(item.embedding) for item in data]
        for vector in vectors:
            if len(vector) != self.dim:
                raise EmbeddingError(
                    f"{self.name} returned {len(vector)} numbers, not {self.dim}: set "
                    "THREADLINE_EMBEDDING_DIM to the model's size if it ignores `dimensions`"
                )
        # Most servers return unit vectors; some (local ones) do not, and cosine scores should compare.
        return [unit(vector) for vector in vectors]

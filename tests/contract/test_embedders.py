"""Every embedder keeps the `Embedder` contract: the same parametrized tests for each of them."""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import struct
from collections.abc import AsyncIterator, Callable

import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from threadline.adapters import minilm_embed
from threadline.adapters.batching_embed import BatchingEmbedder
from threadline.adapters.hash_embed import HashEmbedder
from threadline.adapters.openai_embed import OpenAIEmbedder, floats
from threadline.ports import Embedder, EmbeddingError

DIM = 64
BATCH = 4
Factory = Callable[[], Embedder]


@functools.cache
def shared_minilm() -> Embedder:
    """Loaded once: the model takes a second to load, and it is the same model for every test."""
    return minilm_embed.MiniLMEmbedder()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(
    params=[
        "hash",
        "openai",
        "openai-batching",
        pytest.param(
            "minilm",
            marks=pytest.mark.skipif(not minilm_embed.available(), reason="optional: make minilm"),
        ),
    ]
)
async def make(request: pytest.FixtureRequest, upstream: FakeOpenAI) -> AsyncIterator[Factory]:
    clients: list[openai.AsyncOpenAI] = []

    def factory() -> Embedder:
        if request.param == "hash":
            return HashEmbedder(dim=DIM)
        if request.param == "minilm":
            return shared_minilm()
        client = openai.AsyncOpenAI(base_url=upstream.url, api_key="test-key", max_retries=0)
        clients.append(client)
        remote = OpenAIEmbedder(
            client, model="text-embedding-3-small", dim=DIM, batch_size=BATCH, timeout_s=5
        )
        return BatchingEmbedder(remote, batch_size=BATCH) if request.param == "openai-batching" else remote

    yield factory
    for client in clients:
        await client.close()


TEXTS = [
    "My locker code at the gym is 4417.",
    "",
    "   ",
    "🙂🙂",
    "the and of",
    "Ünïcödé façade — naïve café",
    "x" * 20_000,
]


async def test_one_unit_vector_of_dim_per_text_in_order(make: Factory) -> None:
    embedder = make()
    vectors = await embedder.embed(TEXTS)
    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert len(vector) == embedder.dim
        assert all(math.isfinite(x) for x in vector)
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-6)


async def test_batches_keep_each_text_its_own_vector(make: Factory) -> None:
    embedder = make()
    texts = [f"note number {i} about topic {i * 7}" for i in range(BATCH * 2 + 3)]
    together = await embedder.embed(texts)
    alone = [(await embedder.embed([text]))[0] for text in texts]
    for a, b in zip(together, alone, strict=True):
        assert cosine(a, b) == pytest.approx(1.0, abs=1e-6)


async def test_deterministic_across_instances(make: Factory) -> None:
    first, second = make(), make()
    assert first.name == second.name
    assert first.name
    [a] = await first.embed(["the same words, the same vector"])
    [b] = await second.embed(["the same words, the same vector"])
    assert cosine(a, b) == pytest.approx(1.0, abs=1e-6)


async def test_different_texts_are_not_identical(make: Factory) -> None:
    a, b = await make().embed(["sailing on the lake", "tax return deadline"])
    assert cosine(a, b) < 0.9


async def test_no_texts_no_vectors(make: Factory) -> None:
    assert await make().embed([]) == []


async def test_openai_asks_for_base64_dimensions_and_batches(upstream: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=upstream.url, api_key="test-key", max_retries=0)
    try:
        embedder = OpenAIEmbedder(client, model="text-embedding-3-small", dim=DIM, batch_size=3, timeout_s=5)
        await embedder.embed([f"text {i}" for i in range(7)])
    finally:
        await client.close()
    requests = upstream.embedding_requests
    assert [len(r["input"]) for r in requests] == [3, 3, 1]
    assert {r["encoding_format"] for r in requests} == {"base64"}
    assert {r["dimensions"] for r in requests} == {DIM}
    assert embedder.name == "openai:text-embedding-3-small"


def test_openai_vectors_read_the_same_as_base64_or_as_numbers() -> None:
    numbers = [0.5, -0.25, 1e-3, 3.0]
    packed = base64.b64encode(struct.pack("<4f", *numbers)).decode()
    assert floats(packed) == pytest.approx(numbers, rel=1e-6)
    assert floats(numbers) == numbers  # a server that ignores `encoding_format`
    with pytest.raises(EmbeddingError):
        floats("not base64!")


async def test_concurrent_callers_share_requests_and_get_their_own_vectors(upstream: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=upstream.url, api_key="test-key", max_retries=0)
    try:
        remote = OpenAIEmbedder(client, model="text-embedding-3-small", dim=DIM, batch_size=64, timeout_s=5)
        batching = BatchingEmbedder(remote, batch_size=64, concurrency=1)
        texts = [f"question number {i}" for i in range(40)]
        together = await asyncio.gather(*(batching.embed([text]) for text in texts))
        alone = await remote.embed(texts)
    finally:
        await client.close()
    assert [vectors[0] for vectors in together] == alone
    # 40 callers at once: the first request goes alone, the other 39 wait for it and go together.
    assert [len(r["input"]) for r in upstream.embedding_requests[:-1]] == [1, 39]


async def test_a_caller_that_gives_up_is_left_out_and_failures_reach_everyone() -> None:
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    try:
        remote = OpenAIEmbedder(client, model="m", dim=DIM, batch_size=8, timeout_s=2)
        batching = BatchingEmbedder(remote, batch_size=8, concurrency=1)
        first = asyncio.ensure_future(batching.embed(["a"]))
        gone = asyncio.ensure_future(batching.embed(["b"]))
        waiting = asyncio.ensure_future(batching.embed(["c"]))
        await asyncio.sleep(0)
        gone.cancel()
        results = await asyncio.gather(first, waiting, return_exceptions=True)
    finally:
        await client.close()
    assert all(isinstance(result, EmbeddingError) for result in results)
    assert gone.cancelled()


async def test_openai_failures_are_embedding_errors() -> None:
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    try:
        embedder = OpenAIEmbedder(client, model="m", dim=DIM, batch_size=3, timeout_s=2)
        with pytest.raises(EmbeddingError):
            await embedder.embed(["hello"])
    finally:
        await client.close()

"""The fake OpenAI server answers the real `openai` SDK (and plain httpx) exactly as the OpenAI API does."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionStreamOptionsParam,
)

from tests.support.fake_openai import Behaviour, FakeOpenAI, count_prompt_tokens, split_tokens

MODEL = "gpt-4o-mini"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_fake(fake: FakeOpenAI) -> Iterator[None]:
    fake.reset()
    yield
    assert fake.errors == []


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=fake.url, api_key="test", max_retries=0) as sdk:
        yield sdk


async def open_stream(
    client: AsyncOpenAI, *, include_usage: bool = False
) -> AsyncStream[ChatCompletionChunk]:
    options: ChatCompletionStreamOptionsParam | openai.Omit = (
        {"include_usage": True} if include_usage else openai.omit
    )
    return await client.chat.completions.create(
        model=MODEL, messages=USER, stream=True, stream_options=options
    )


async def next_content(stream: AsyncStream[ChatCompletionChunk]) -> str:
    while True:
        chunk = await anext(stream)
        if chunk.choices and chunk.choices[0].delta.content:
            return chunk.choices[0].delta.content


async def read_into(stream: AsyncStream[ChatCompletionChunk], received: list[ChatCompletionChunk]) -> None:
    async for chunk in stream:
        received.append(chunk)


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_streamed_text_equals_the_reply(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="Paris,  of course.\nAsk me more!")
    async with await open_stream(client) as stream:
        chunks = [chunk async for chunk in stream]

    assert text_of(chunks) == "Paris,  of course.\nAsk me more!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert len(chunks) == 2 + len(split_tokens("Paris,  of course.\nAsk me more!"))
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "stop"]
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert fake.requests == [{"model": MODEL, "messages": USER, "stream": True}]


async def test_default_reply_echoes_the_last_user_message(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]
    completion = await client.chat.completions.create(model=MODEL, messages=messages)

    assert completion.choices[0].message.content == "Echo: second question"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == (3 + 1 + 1 + 2) + 3 * 4 == count_prompt_tokens(list(messages))


async def test_usage_chunk_only_with_include_usage(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="one two three")
    async with await open_stream(client, include_usage=True) as stream:
        chunks = [chunk async for chunk in stream]

    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert all(c.usage is None and c.choices for c in content)
    assert last.usage.completion_tokens == 3
    assert last.usage.prompt_tokens == 6 + 3
    assert last.usage.total_tokens == 12
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 0
    assert last.usage.completion_tokens_details is not None
    assert last.usage.completion_tokens_details.reasoning_tokens == 0
    assert fake.reported_usage == [last.usage.model_dump(exclude_none=True)]


async def test_wire_format_seen_by_plain_httpx(fake: FakeOpenAI) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": USER, "stream": True}
    async with httpx.AsyncClient(base_url=fake.url) as http:
        for include_usage in (False, True):
            body["stream_options"] = {"include_usage": include_usage}
            async with http.stream("POST", "/chat/completions", json=body) as response:
                raw = b"".join([part async for part in response.aiter_raw()])
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["transfer-encoding"] == "chunked"
            events = raw.decode().split("\n\n")
            assert events[-2:] == ["data: [DONE]", ""]
            assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])
            chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
            assert chunks[0]["choices"][0] == {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
            assert chunks[0]["system_fingerprint"]
            with_choices = chunks[:-1] if include_usage else chunks
            assert with_choices[-1]["choices"][0]["delta"] == {}
            assert all(("usage" in c) is include_usage for c in with_choices)
            assert all(c["usage"] is None for c in with_choices if include_usage)
        assert fake.connections_opened >= 1


async def test_connections_are_kept_alive(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    before = fake.connections_opened
    for _ in range(3):
        async with await open_stream(client) as stream:
            assert text_of([chunk async for chunk in stream]).startswith("Echo: ")
        await client.chat.completions.create(model=MODEL, messages=USER)
    assert fake.connections_opened - before == 1


async def test_non_streaming_completion(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="Paris.")
    completion = await client.chat.completions.create(model=MODEL, messages=USER)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 1)
    assert fake.reported_usage == [completion.usage.model_dump(exclude_none=True)]


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.behaviour = Behaviour(reply="a b c d e")
    async with await client.chat.completions.create(
        model=MODEL, messages=USER, stream=True, max_tokens=2, stream_options={"include_usage": True}
    ) as stream:
        chunks = [chunk async for chunk in stream]
    completion = await client.chat.completions.create(model=MODEL, messages=USER, max_completion_tokens=3)

    assert text_of(chunks) == "a b "
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert completion.choices[0].message.content == "a b c "
    assert completion.choices[0].finish_reason == "length"


async def test_fail_status_500_raises_every_time(fake: FakeOpenAI) -> None:
    fake.behaviour = Behaviour(fail_status=500, retry_after_s=0.001)
    async with AsyncOpenAI(base_url=fake.url, api_key="test", max_retries=1) as sdk:
        with pytest.raises(openai.InternalServerError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=USER, stream=True)

    assert raised.value.status_code == 500
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "server_error"
    assert len(fake.requests) == 2
    assert fake.reported_usage == []


async def test_429_then_success_after_fail_times(fake: FakeOpenAI) -> None:
    fake.behaviour = Behaviour(reply="finally", fail_status=429, fail_times=2, retry_after_s=0.001)
    async with AsyncOpenAI(base_url=fake.url, api_key="test", max_retries=2) as sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=USER)
        fake.behaviour = Behaviour(fail_status=429, fail_times=1)
        with pytest.raises(openai.RateLimitError):
            await sdk.with_options(max_retries=0).chat.completions.create(model=MODEL, messages=USER)

    assert completion.choices[0].message.content == "finally"
    assert len(fake.requests) == 4
    assert len(fake.reported_usage) == 1


async def test_rate_limit_error_body_and_headers(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(fail_status=429)
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=MODEL, messages=USER)

    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.response.headers["retry-after"] == "0"
    assert raised.value.request_id is not None


async def test_reset_after_raises_in_iteration_after_k_chunks(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="a b c d", reset_after=2)
    received: list[ChatCompletionChunk] = []
    async with await open_stream(client) as stream:
        with pytest.raises(openai.APIConnectionError):
            await read_into(stream, received)

    assert text_of(received) == "a b "
    assert fake.disconnects == 0
    assert fake.reported_usage == []
    await fake.wait_for(lambda: fake.active_streams == 0, timeout=2)


async def test_stall_pauses_then_continues(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="a b c", stall_after=1, stall_s=0.3)
    async with await open_stream(client) as stream:
        assert await next_content(stream) == "a "
        started = time.monotonic()
        assert await next_content(stream) == "b "
        stalled = time.monotonic() - started
        rest = [chunk async for chunk in stream]

    assert 0.25 <= stalled < 3
    assert text_of(rest) == "c"


async def test_malformed_chunk_breaks_sdk_parsing(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="a b c", malformed_after=1)
    async with await open_stream(client) as stream:
        assert await next_content(stream) == "a "
        with pytest.raises(json.JSONDecodeError):
            await anext(stream)


async def test_client_closing_the_stream_counts_a_disconnect(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="a b c d e f", gap_s=0.02)
    stream = await open_stream(client)
    assert await next_content(stream) == "a "
    await stream.close()

    await fake.wait_for(lambda: fake.disconnects == 1 and fake.active_streams == 0, timeout=2)
    assert fake.reported_usage == []


async def test_disconnect_is_noticed_during_a_long_stall(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="a b c", stall_after=1, stall_s=60)
    stream = await open_stream(client)
    assert await next_content(stream) == "a "
    await fake.wait_for(lambda: fake.active_streams == 1, timeout=2)
    await stream.close()

    await fake.wait_for(lambda: fake.disconnects == 1 and fake.active_streams == 0, timeout=1)


async def test_cancelled_request_before_the_first_token_counts_a_disconnect(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.behaviour = Behaviour(ttft_s=60)
    call = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=USER))
    await fake.wait_for(lambda: len(fake.requests) == 1, timeout=2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    await fake.wait_for(lambda: fake.disconnects == 1, timeout=1)


async def test_ttft_and_gap_are_roughly_honoured(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="a b c d e", ttft_s=0.15, gap_s=0.03)
    started = time.monotonic()
    async with await open_stream(client) as stream:
        await next_content(stream)
        first = time.monotonic() - started
        rest = [chunk async for chunk in stream]
    total = time.monotonic() - started

    assert 0.13 <= first < 3
    assert 0.13 + 4 * 0.025 <= total < 5
    assert text_of(rest) == "b c d e"


async def test_many_concurrent_streams(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.behaviour = Behaviour(reply="one two three four five", gap_s=0.01)

    async def one() -> str:
        async with await open_stream(client) as stream:
            return text_of([chunk async for chunk in stream])

    texts = await asyncio.gather(*(one() for _ in range(100)))

    assert set(texts) == {"one two three four five"}
    assert len(fake.reported_usage) == 100
    await fake.wait_for(lambda: fake.active_streams == 0, timeout=2)


async def test_embeddings_are_deterministic_unit_vectors(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    default = await client.embeddings.create(model="text-embedding-3-small", input="hello world")
    floats = await client.embeddings.create(
        model="text-embedding-3-small",
        input=["hello world", "other"],
        dimensions=256,
        encoding_format="float",
    )
    short = await client.embeddings.create(
        model="text-embedding-3-small", input="hello world", dimensions=256
    )

    assert len(default.data[0].embedding) == 1536
    assert [(d.index, len(d.embedding)) for d in floats.data] == [(0, 256), (1, 256)]
    assert math.isclose(sum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-6)
    assert short.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-5, abs=1e-7)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert (floats.usage.prompt_tokens, floats.usage.total_tokens) == (3, 3)
    assert [r.get("encoding_format") for r in fake.embedding_requests] == ["base64", "float", "base64"]


async def test_embeddings_base64_is_little_endian_float32(fake: FakeOpenAI) -> None:
    body = {"model": "text-embedding-3-small", "input": "x", "dimensions": 4, "encoding_format": "base64"}
    async with httpx.AsyncClient(base_url=fake.url) as http:
        response = await http.post("/embeddings", json=body)
    vector = struct.unpack("<4f", base64.b64decode(response.json()["data"][0]["embedding"]))
    assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-5)


async def test_models_list_and_retrieve(client: AsyncOpenAI) -> None:
    page = await client.models.list()
    model = await client.models.retrieve(MODEL)

    assert MODEL in [m.id for m in page.data]
    assert "text-embedding-3-small" in [m.id for m in page.data]
    assert (model.id, model.object) == (MODEL, "model")
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")


async def test_unknown_paths_and_bad_bodies_answer_openai_errors(fake: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        missing = await http.post("/nope", json={})
        bad_json = await http.post("/chat/completions", content=b"{not json")
        no_messages = await http.post("/chat/completions", json={"model": MODEL})

    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert bad_json.status_code == 400
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["type"] == "invalid_request_error"
    assert fake.requests == [{"model": MODEL}]


async def test_wait_for_times_out(fake: FakeOpenAI) -> None:
    with pytest.raises(TimeoutError):
        await fake.wait_for(lambda: False, timeout=0.05)


def test_restartable_context_manager() -> None:
    server = FakeOpenAI()
    for _ in range(2):
        with server:
            response = httpx.get(f"{server.url}/models")
            assert response.status_code == 200
    with pytest.raises(RuntimeError):
        _ = server.url

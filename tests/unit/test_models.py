"""The offline echo model and the token estimator."""

from __future__ import annotations

from threadline.adapters.echo_chat import EchoChat
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.domain.memory import MEMORY_HEADER
from threadline.domain.models import PromptMessage, Role
from threadline.ports import ModelRequest


async def collect(model: EchoChat, request: ModelRequest) -> tuple[list[str], str | None]:
    pieces: list[str] = []
    finish = None
    async for chunk in model.stream(request):
        if chunk.text:
            pieces.append(chunk.text)
        finish = chunk.finish_reason or finish
    return pieces, finish


async def test_echo_quotes_the_question_word_by_word() -> None:
    request = ModelRequest(model="threadline-echo", messages=[PromptMessage(Role.USER, "what is  up")])
    pieces, finish = await collect(EchoChat(delay_ms=0), request)
    assert "".join(pieces) == 'You said: "what is up".'
    assert len(pieces) == 5
    assert finish == "stop"


async def test_echo_shows_the_memory_it_was_given_and_honours_max_tokens() -> None:
    memory = PromptMessage(Role.SYSTEM, f"{MEMORY_HEADER}\n- my cat is called Miso")
    request = ModelRequest(model="threadline-echo", messages=[memory, PromptMessage(Role.USER, "cat?")])
    pieces, _ = await collect(EchoChat(delay_ms=0), request)
    assert "".join(pieces).endswith("I remember: my cat is called Miso")
    cut = ModelRequest(model="threadline-echo", messages=request.messages, max_output_tokens=2)
    pieces, finish = await collect(EchoChat(delay_ms=0), cut)
    assert len(pieces) == 2
    assert finish == "length"


def test_estimates_are_close_for_prose_and_never_zero_for_text() -> None:
    counter = EstimatedTokens()
    assert counter.count("") == 0
    assert counter.count("a") == 2
    prose = "The quick brown fox jumps over the lazy dog. " * 20
    assert 180 <= counter.count(prose) <= 280

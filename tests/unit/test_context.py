"""What the model sees: system prompt, date, summary, and the newest history that fits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.domain.models import Agent, Message, MessageStatus, Role
from threadline.service.context import build_prompt

AGENT = Agent(slug="default", name="Assistant", system_prompt="Be brief.")
NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


def message(seq: int, role: Role, content: str) -> Message:
    return Message(
        id=uuid.uuid4(),
        thread_id=uuid.uuid4(),
        seq=seq,
        role=role,
        content=content,
        status=MessageStatus.COMPLETED if role is Role.ASSISTANT else None,
        run_id=None,
        metadata={},
        created_at=NOW,
    )


def test_system_prompt_carries_the_date_and_summary() -> None:
    prompt = build_prompt(
        agent=AGENT, history=[], now=NOW, counter=EstimatedTokens(), budget_tokens=1000, summary="They met."
    )
    assert prompt[0].role is Role.SYSTEM
    assert prompt[0].content.startswith("Be brief.")
    assert "Monday 23 November 2026, 14:30 UTC" in prompt[0].content
    assert "They met." in prompt[0].content


def test_history_is_trimmed_from_the_oldest_end() -> None:
    history = [
        message(i, Role.USER if i % 2 else Role.ASSISTANT, f"message {i} " + "word " * 50)
        for i in range(1, 11)
    ]
    prompt = build_prompt(agent=AGENT, history=history, now=NOW, counter=EstimatedTokens(), budget_tokens=300)
    kept = [m.content for m in prompt[1:]]
    assert kept
    assert len(kept) < len(history)
    assert kept == [m.content for m in history[-len(kept) :]]


def test_the_newest_message_is_kept_even_over_budget() -> None:
    question = message(1, Role.USER, "x " * 5000)
    prompt = build_prompt(
        agent=AGENT, history=[question], now=NOW, counter=EstimatedTokens(), budget_tokens=50
    )
    assert prompt[-1].content == question.content

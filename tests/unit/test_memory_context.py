"""Memory in the prompt (pure): where it goes, how much of the budget it may take, what the echo says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from threadline.adapters.echo_chat import echo_reply
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.domain.memory import MEMORY_HEADER, Recollection, SummarySource, snippet
from threadline.domain.models import Agent, Message, Role
from threadline.ports import ModelRequest
from threadline.service.context import build_prompt
from threadline.service.summaries import MAX_SUMMARY_CHARS, extractive_summary

AGENT = Agent(slug="default", name="A", system_prompt="Be brief.")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COUNTER = EstimatedTokens()


def message(seq: int, content: str, role: Role = Role.USER) -> Message:
    return Message(
        id=uuid.uuid4(), thread_id=uuid.uuid4(), seq=seq, role=role, content=content, status=None,
        run_id=None, metadata={}, created_at=NOW,
    )  # fmt: skip


def recalled(content: str, score: float = 0.8) -> Recollection:
    return Recollection(
        message_id=uuid.uuid4(), thread_id=uuid.uuid4(), role=Role.USER, content=content,
        created_at=datetime(2026, 11, 2, tzinfo=UTC), score=score,
    )  # fmt: skip


def test_memory_comes_after_the_system_prompt_and_before_the_history() -> None:
    history = [message(7, "What is my locker code?")]
    prompt = build_prompt(
        agent=AGENT, history=history, now=NOW, counter=COUNTER, budget_tokens=2_000, summary="Gym talk.",
        memory=[recalled("My locker code is 4417."), recalled("I go on Mondays.", 0.4)],
    )  # fmt: skip
    assert [m.role for m in prompt] == [Role.SYSTEM, Role.SYSTEM, Role.USER]
    assert "Summary of the conversation so far:\nGym talk." in prompt[0].content
    assert prompt[1].content == (
        f"{MEMORY_HEADER}\n"
        "- [02 Nov 2026] user: My locker code is 4417.\n"
        "- [02 Nov 2026] user: I go on Mondays."
    )
    reply = echo_reply(ModelRequest(model="threadline-echo", messages=prompt))
    assert reply == (
        'You said: "What is my locker code?". I remember: [02 Nov 2026] user: My locker code is 4417. '
        "| [02 Nov 2026] user: I go on Mondays."
    )


def test_no_memory_no_memory_message() -> None:
    prompt = build_prompt(
        agent=AGENT, history=[message(1, "hi")], now=NOW, counter=COUNTER, budget_tokens=500
    )
    assert [m.role for m in prompt] == [Role.SYSTEM, Role.USER]


def test_memory_takes_at_most_a_quarter_of_the_budget_and_never_the_questions_share() -> None:
    long_memory = [recalled("word " * 300, 0.9), recalled("short fact", 0.5)]
    history = [message(1, "older " * 50), message(2, "the question")]
    prompt = build_prompt(
        agent=AGENT, history=history, now=NOW, counter=COUNTER, budget_tokens=600, memory=long_memory
    )
    memory = next(m for m in prompt if m.content.startswith(MEMORY_HEADER))
    # The long item does not fit a quarter of 600 tokens; the short one, ranked after it, does.
    assert memory.content.endswith("short fact")
    assert prompt[-1].content == "the question"
    tight = build_prompt(
        agent=AGENT, history=[message(1, "q " * 400)], now=NOW, counter=COUNTER, budget_tokens=300,
        memory=[recalled("a fact")],
    )  # fmt: skip
    assert [m.role for m in tight] == [Role.SYSTEM, Role.USER]


def test_snippets_are_one_line_and_cut_at_a_word() -> None:
    assert snippet("a\n\nb   c") == "a b c"
    assert snippet("alpha beta gamma", 12) == "alpha beta…"


def test_the_extractive_summary_rolls_and_keeps_the_newest_lines() -> None:
    thread = uuid.uuid4()
    source = SummarySource(
        thread_id=thread, user_id="u", agent_model=None, summary="- user: old line", through_seq=2,
        messages=[message(3, "new question\nwith lines"), message(4, "an answer", Role.ASSISTANT)],
    )  # fmt: skip
    assert (
        extractive_summary(source)
        == "- user: old line\n- user: new question with lines\n- assistant: an answer"
    )
    many = SummarySource(
        thread_id=thread, user_id="u", agent_model=None, summary=None, through_seq=0,
        messages=[message(i, f"message {i} " + "x" * 150) for i in range(1, 60)],
    )  # fmt: skip
    summary = extractive_summary(many)
    assert len(summary) <= MAX_SUMMARY_CHARS
    assert summary.splitlines()[-1].startswith("- user: message 59")
    assert "message 1 " not in summary

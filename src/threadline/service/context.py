"""Assembles a run's prompt: pure, so every rule about what the model sees is tested directly."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from threadline.domain.memory import MEMORY_HEADER, Recollection, snippet
from threadline.domain.models import Agent, Message, PromptMessage, Role
from threadline.ports import TokenCounter

# Each message costs a few tokens of framing in every chat format; count them so trimming is honest.
PER_MESSAGE_OVERHEAD = 4
MEMORY_ITEM_CHARS = 500


def build_prompt(
    *,
    agent: Agent,
    history: Sequence[Message],
    now: datetime,
    counter: TokenCounter,
    budget_tokens: int,
    summary: str | None = None,
    memory: Sequence[Recollection] = (),
) -> list[PromptMessage]:
    """System prompt, date and time, summary, recalled memory, then the newest history that fits.

    The newest message (the user's question) is always kept, even when it alone exceeds the budget.
    Memory (most relevant first) may use up to a quarter of the budget, never the question's share.
    """
    system = f"{agent.system_prompt}\n\nCurrent date and time: {now.strftime('%A %d %B %Y, %H:%M %Z')}."
    if summary:
        system += f"\n\nSummary of the conversation so far:\n{summary}"
    head = [PromptMessage(Role.SYSTEM, system)]
    remaining = budget_tokens - counter.count(system) - PER_MESSAGE_OVERHEAD
    question = counter.count(history[-1].content) + PER_MESSAGE_OVERHEAD if history else 0
    recalled = memory_message(memory, counter, min(budget_tokens // 4, remaining - question))
    if recalled is not None:
        head.append(recalled)
        remaining -= counter.count(recalled.content) + PER_MESSAGE_OVERHEAD
    kept: list[PromptMessage] = []
    for message in reversed(history):
        cost = counter.count(message.content) + PER_MESSAGE_OVERHEAD
        if kept and cost > remaining:
            break
        kept.append(PromptMessage(message.role, message.content))
        remaining -= cost
    kept.reverse()
    return head + kept


def memory_line(item: Recollection) -> str:
    return f"- [{item.created_at:%d %b %Y}] {item.role.value}: {snippet(item.content, MEMORY_ITEM_CHARS)}"


def memory_message(
    memory: Sequence[Recollection], counter: TokenCounter, budget_tokens: int
) -> PromptMessage | None:
    """Recalled messages as one system message, as many as fit `budget_tokens`, most relevant first."""
    lines = [MEMORY_HEADER]
    used = counter.count(MEMORY_HEADER) + PER_MESSAGE_OVERHEAD
    for item in memory:
        line = memory_line(item)
        cost = counter.count(line) + 1
        if used + cost > budget_tokens:
            continue
        lines.append(line)
        used += cost
    return PromptMessage(Role.SYSTEM, "\n".join(lines)) if len(lines) > 1 else None


def prompt_text(messages: Sequence[PromptMessage]) -> str:
    return "\n".join(message.content for message in messages)


def prompt_tokens(messages: Sequence[PromptMessage], counter: TokenCounter) -> int:
    return sum(counter.count(message.content) + PER_MESSAGE_OVERHEAD for message in messages)

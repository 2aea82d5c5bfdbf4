"""A message to a thread whose previous reply is still streaming: reject it, queue it, or interrupt."""

from __future__ import annotations

import enum

from threadline.domain.errors import RunInProgress
from threadline.domain.models import ChatTurn
from threadline.service.chat import ChatInput, ChatService
from threadline.service.lifecycle import RunKeeper

# A queued message waits for the reply ahead of it; two is plenty for any honest client.
MAX_ATTEMPTS = 3


class BusyPolicy(enum.StrEnum):
    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"


async def start_turn(
    chat: ChatService,
    keeper: RunKeeper,
    user_id: str,
    request: ChatInput,
    policy: BusyPolicy,
    *,
    max_wait_s: float,
) -> ChatTurn:
    """`reject` answers 409; `enqueue` waits for the live run to end; `interrupt` cancels it first."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return await chat.start_turn(user_id, request)
        except RunInProgress as busy:
            if policy is BusyPolicy.REJECT or attempt == MAX_ATTEMPTS - 1:
                raise
            if policy is BusyPolicy.INTERRUPT:
                await keeper.cancel(user_id, busy.run_id)
            await keeper.wait_for_end(busy.run_id, max_wait_s)
    raise AssertionError("unreachable")

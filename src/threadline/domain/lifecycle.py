"""A thread's lifecycle: which status may follow which, and what a new message does to each."""

from __future__ import annotations

from threadline.domain.errors import InvalidTransition, ThreadNotWritable
from threadline.domain.models import ThreadStatus

ACTIVE = ThreadStatus.ACTIVE
CLOSED = ThreadStatus.CLOSED
RESOLVED = ThreadStatus.RESOLVED
ARCHIVED = ThreadStatus.ARCHIVED
ABANDONED = ThreadStatus.ABANDONED

# The one table. `abandoned` is what idleness makes of an active thread, so only `active` leads
# there; `archived` is put away and only comes back by reopening it.
TRANSITIONS: dict[ThreadStatus, frozenset[ThreadStatus]] = {
    ACTIVE: frozenset({CLOSED, RESOLVED, ARCHIVED, ABANDONED}),
    CLOSED: frozenset({ACTIVE, RESOLVED, ARCHIVED}),
    RESOLVED: frozenset({ACTIVE, CLOSED, ARCHIVED}),
    ARCHIVED: frozenset({ACTIVE}),
    ABANDONED: frozenset({ACTIVE, CLOSED, RESOLVED, ARCHIVED}),
}

# A message to an abandoned thread picks the conversation up again; the others were ended on
# purpose, so writing to them needs an explicit reopen (PATCH status=active) first.
REOPENED_BY_MESSAGE = frozenset({ABANDONED})


def can_transition(current: ThreadStatus, target: ThreadStatus) -> bool:
    return current == target or target in TRANSITIONS[current]


def check_transition(current: ThreadStatus, target: ThreadStatus) -> None:
    """Setting a status a thread already has is a no-op; a move the table lacks is a 409."""
    if not can_transition(current, target):
        allowed = ", ".join(sorted(status.value for status in TRANSITIONS[current]))
        raise InvalidTransition(
            f"A thread cannot go from {current.value} to {target.value}; from {current.value} it can "
            f"become: {allowed}."
        )


def status_for_message(current: ThreadStatus, thread_id: object) -> ThreadStatus:
    """The status a thread takes when a message is written to it, or ThreadNotWritable."""
    if current is ACTIVE:
        return ACTIVE
    if current in REOPENED_BY_MESSAGE:
        check_transition(current, ACTIVE)
        return ACTIVE
    raise ThreadNotWritable(
        f"This thread is {current.value}; reopen it with PATCH /threads/{thread_id} "
        '{"status": "active"} first.'
    )

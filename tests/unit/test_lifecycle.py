"""The thread lifecycle table: every pair of statuses, and what a new message does to each."""

from __future__ import annotations

import uuid

import pytest

from threadline.domain.errors import InvalidTransition, ThreadNotWritable
from threadline.domain.lifecycle import TRANSITIONS, can_transition, check_transition, status_for_message
from threadline.domain.models import ThreadStatus as S

ALLOWED = {
    (S.ACTIVE, S.CLOSED), (S.ACTIVE, S.RESOLVED), (S.ACTIVE, S.ARCHIVED), (S.ACTIVE, S.ABANDONED),
    (S.CLOSED, S.ACTIVE), (S.CLOSED, S.RESOLVED), (S.CLOSED, S.ARCHIVED),
    (S.RESOLVED, S.ACTIVE), (S.RESOLVED, S.CLOSED), (S.RESOLVED, S.ARCHIVED),
    (S.ARCHIVED, S.ACTIVE),
    (S.ABANDONED, S.ACTIVE), (S.ABANDONED, S.CLOSED), (S.ABANDONED, S.RESOLVED), (S.ABANDONED, S.ARCHIVED),
}  # fmt: skip


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_the_table_allows_exactly_the_documented_moves(current: S, target: S) -> None:
    expected = current == target or (current, target) in ALLOWED
    assert can_transition(current, target) is expected
    if expected:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition) as raised:
            check_transition(current, target)
        assert current.value in raised.value.message
        assert raised.value.code == "invalid_transition"


def test_only_an_active_thread_can_become_abandoned() -> None:
    assert [s for s in S if can_transition(s, S.ABANDONED) and s != S.ABANDONED] == [S.ACTIVE]


def test_a_message_keeps_active_reopens_abandoned_and_refuses_the_rest() -> None:
    thread_id = uuid.uuid4()
    assert status_for_message(S.ACTIVE, thread_id) is S.ACTIVE
    assert status_for_message(S.ABANDONED, thread_id) is S.ACTIVE
    for status in (S.CLOSED, S.RESOLVED, S.ARCHIVED):
        with pytest.raises(ThreadNotWritable) as raised:
            status_for_message(status, thread_id)
        assert str(thread_id) in raised.value.message
        assert status.value in raised.value.message

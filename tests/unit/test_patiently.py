"""A committed run's database steps wait out a busy pool instead of failing the run."""

from __future__ import annotations

import time

import pytest

from threadline.domain.errors import Unavailable
from threadline.service.chat import patiently


async def test_a_step_is_retried_while_the_pool_is_busy() -> None:
    calls = 0

    async def step() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("The database is busy; try again shortly.", retry_after_s=1)
        return "saved"

    assert await patiently(step) == "saved"
    assert calls == 3


async def test_a_pool_busy_for_every_attempt_still_fails_and_other_errors_are_not_retried() -> None:
    calls = 0

    async def busy() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("The database is busy; try again shortly.", retry_after_s=1)

    with pytest.raises(Unavailable):
        await patiently(busy, within_s=0.25)
    assert calls >= 2

    async def broken() -> None:
        raise RuntimeError("not a busy pool")

    with pytest.raises(RuntimeError):
        await patiently(broken)


async def test_a_step_waits_out_a_database_that_is_down_for_a_while() -> None:
    """Failing at once, attempt after attempt, for longer than a busy pool's few tries used to last."""
    back_at = time.monotonic() + 1.5

    async def step() -> str:
        if time.monotonic() < back_at:
            raise Unavailable("The database is unavailable; try again shortly.", retry_after_s=2)
        return "saved"

    assert await patiently(step) == "saved"

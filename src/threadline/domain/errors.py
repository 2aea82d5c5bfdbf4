"""Domain errors; the HTTP layer maps each to one problem+json status in one table."""

from __future__ import annotations

from uuid import UUID

from threadline.domain.usage import Quota


class ThreadlineError(Exception):
    """Base of every error Threadline answers with a 4xx."""

    code = "threadline_error"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class NotFound(ThreadlineError):
    code = "not_found"


class InvalidInput(ThreadlineError):
    code = "invalid_input"


class MessageTooLong(InvalidInput):
    code = "message_too_long"


class Conflict(ThreadlineError):
    code = "conflict"


class RunInProgress(Conflict):
    code = "run_in_progress"

    def __init__(self, message: str, *, run_id: UUID) -> None:
        super().__init__(message)
        self.run_id = run_id


class IdempotencyMismatch(ThreadlineError):
    code = "idempotency_key_reused"


class ThreadNotWritable(Conflict):
    code = "thread_not_writable"


class Unavailable(ThreadlineError):
    code = "unavailable"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NothingToRegenerate(Conflict):
    code = "nothing_to_regenerate"


class AgentInUse(Conflict):
    code = "agent_in_use"


class RateLimited(ThreadlineError):
    """The caller asked for more than a limit allows; `retry_after_s` says when to try again."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, quota: Quota | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.quota = quota


class TooManyRuns(RateLimited):
    code = "too_many_streams"


class BudgetExceeded(RateLimited):
    code = "token_budget_exceeded"

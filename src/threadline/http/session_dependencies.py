"""The session routes' dependency, provided at their controllers' layer."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from threadline.sessions import Sessions


def provide_sessions(state: State) -> Sessions:
    sessions: Sessions = state.services.sessions
    return sessions


SESSION_DEPENDENCIES = {"sessions": Provide(provide_sessions, sync_to_thread=False)}

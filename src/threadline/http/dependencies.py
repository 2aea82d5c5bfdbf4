"""Dependency providers: controllers receive services, never build them."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from threadline.db.history import PostgresHistory
from threadline.ports import ChatStore, UsageReports
from threadline.service.admission import AdmissionControl
from threadline.service.chat import ChatService
from threadline.service.lifecycle import RunKeeper
from threadline.service.search import SearchService
from threadline.service.streams import RunStreams
from threadline.services import Services


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_chat(state: State) -> ChatService:
    return _services(state).chat


def provide_streams(state: State) -> RunStreams:
    return _services(state).streams


def provide_history(state: State) -> PostgresHistory:
    return _services(state).history


def provide_store(state: State) -> ChatStore:
    return _services(state).store


def provide_keeper(state: State) -> RunKeeper:
    return _services(state).keeper


def provide_usage_reports(state: State) -> UsageReports:
    return _services(state).accounting.usage


def provide_admission(state: State) -> AdmissionControl:
    return _services(state).accounting.admission


def provide_services(state: State) -> Services:
    return _services(state)


def provide_search(state: State) -> SearchService:
    return _services(state).memory.search


DEPENDENCIES = {
    "chat": Provide(provide_chat, sync_to_thread=False),
    "streams": Provide(provide_streams, sync_to_thread=False),
    "history": Provide(provide_history, sync_to_thread=False),
    # Not "store": Litestar reports an invalid body field under its name, and a body field named like a
    # dependency (the OpenAI API's `store`) was then answered as a server error instead of a 400.
    "chat_store": Provide(provide_store, sync_to_thread=False),
    "keeper": Provide(provide_keeper, sync_to_thread=False),
    "services": Provide(provide_services, sync_to_thread=False),
    "usage_reports": Provide(provide_usage_reports, sync_to_thread=False),
    "admission": Provide(provide_admission, sync_to_thread=False),
    "search": Provide(provide_search, sync_to_thread=False),
}

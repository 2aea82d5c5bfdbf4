"""The objects a running app shares, built by the lifespan and handed to controllers."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from threadline.accounting import Accounting
from threadline.db.database import Database
from threadline.db.history import PostgresHistory
from threadline.memory import Memory
from threadline.ports import ChatStore
from threadline.service.chat import ChatService
from threadline.service.lifecycle import RunKeeper
from threadline.service.runs import RunRegistry
from threadline.service.streams import RunStreams
from threadline.sessions import Sessions
from threadline.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    database: Database
    redis: Redis
    store: ChatStore
    history: PostgresHistory
    chat: ChatService
    streams: RunStreams
    registry: RunRegistry
    keeper: RunKeeper
    sessions: Sessions
    accounting: Accounting
    memory: Memory

"""`RedisCancelSignal`: cancel requests broadcast to every process over Redis pub/sub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from uuid import UUID

import anyio
from redis.asyncio import Redis

log = logging.getLogger("threadline.runs")
CHANNEL = "threadline:cancel"


class RedisCancelSignal:
    """The `CancelSignal` port. A lost message is not lost work: owners also poll the cancel flag."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def publish(self, run_id: UUID) -> None:
        await self._redis.publish(CHANNEL, str(run_id))

    async def listen(self, on_cancel: Callable[[UUID], None]) -> None:
        """Call `on_cancel` for every request, forever, resubscribing after a Redis outage."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        on_cancel(UUID(message["data"].decode()))
            except (OSError, ConnectionError, TimeoutError, ValueError) as error:
                log.warning("cancel listener lost Redis (%s); resubscribing", error)
                await asyncio.sleep(1.0)
            finally:
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

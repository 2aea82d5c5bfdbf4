"""Threads that other wire protocols name: a client's chat id mapped onto a Threadline thread.

The Vercel AI SDK names a conversation with an id the browser made up (`useChat` generates short
random strings); an OpenAI-compatible client names none. Threadline threads are UUIDs owned by one
user, so a chat id that is a UUID is used as the thread id itself (a client can continue a thread
it got from Threadline), and any other chat id becomes `uuid5(CHAT_NAMESPACE, user_id + "\\n" +
chat_id)`: the same user and chat id always reach the same thread, and two users who pick the same
chat id get two threads.
"""

from __future__ import annotations

import uuid
from uuid import UUID

from threadline.domain.errors import InvalidInput, NotFound
from threadline.domain.models import Thread
from threadline.ports import ChatStore

CHAT_NAMESPACE = UUID("5d0c6b2e-7a9f-4f27-9b4e-3c1d0e8a6f11")
MAX_CHAT_ID_CHARS = 200


def thread_id_for_chat(user_id: str, chat_id: str) -> UUID:
    """The thread a client's chat id names, for this user."""
    if not chat_id or len(chat_id) > MAX_CHAT_ID_CHARS or not chat_id.isprintable():
        raise InvalidInput(f"A chat id is 1 to {MAX_CHAT_ID_CHARS} printable characters.")
    try:
        return UUID(chat_id)
    except ValueError:
        return uuid.uuid5(CHAT_NAMESPACE, f"{user_id}\n{chat_id}")


async def open_thread(store: ChatStore, user_id: str, thread_id: UUID, agent: str | None = None) -> Thread:
    """The caller's thread `thread_id`, created (with `agent`, else the default) if nobody has it.

    An id that another user's thread already has answers 404, like every id the caller does not own.
    """
    if (thread := await store.thread(user_id, thread_id)) is not None:
        return thread
    chosen = await store.agent_for(user_id, None, agent)
    created = await store.create_thread(user_id, thread_id, chosen.slug)
    # None: a concurrent request of this user created it first, or another user owns the id.
    found = created or await store.thread(user_id, thread_id)
    if found is None:
        raise NotFound("Thread not found.")
    return found


async def new_thread(store: ChatStore, user_id: str, agent: str | None = None) -> Thread:
    return await open_thread(store, user_id, uuid.uuid4(), agent)

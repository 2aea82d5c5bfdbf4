"""Regenerate: a new reply to a thread's last question (edited first, if asked), run like any other."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from threadline.domain.errors import Unavailable
from threadline.domain.models import ChatTurn
from threadline.ports import ChatModels, ChatStore, Regeneration, Regenerations
from threadline.service.chat import ChatInput, ChatService
from threadline.service.runs import RunRegistry
from threadline.settings import Settings


class Regenerator:
    def __init__(
        self,
        *,
        chat: ChatService,
        store: ChatStore,
        regenerations: Regenerations,
        models: ChatModels,
        registry: RunRegistry,
        settings: Settings,
        owner: str,
    ) -> None:
        self._chat = chat
        self._store = store
        self._regenerations = regenerations
        self._models = models
        self._registry = registry
        self._settings = settings
        self._owner = owner

    async def regenerate(
        self,
        user_id: str,
        thread_id: UUID,
        *,
        content: str | None = None,
        client: dict[str, Any] | None = None,
    ) -> ChatTurn:
        """Supersede the last reply (and with `content`, the last question) and start a new run.

        The run is the same as a chat turn's: same agent settings, same events, same stream routes.
        """
        if content is not None:
            self._chat.validate(ChatInput(message=content))
        if not self._registry.accepting:
            raise Unavailable("Threadline is shutting down; retry on another instance.", retry_after_s=1)
        agent = await self._store.agent_for(user_id, thread_id, None)
        model_name = agent.model or self._settings.model.default_model
        model = self._models.resolve(model_name)
        # Admitted like a chat turn (429 past a budget or the live-run cap); the thread's last prompt
        # and reply, which the admission estimates from, already hold the question.
        admitted = self._chat.admission(user_id, thread_id=thread_id, agent=agent, question=content or "")
        async with admitted as ticket:
            turn = await self._regenerations.begin_regeneration(
                Regeneration(
                    user_id=user_id,
                    thread_id=thread_id,
                    content=content,
                    model=model_name,
                    provider=model.provider,
                    owner=self._owner,
                    client=client or {},
                    run_id=ticket.run_id,
                )
            )
            ticket.keep()
        await self._chat.launch(turn, ticket.bound(agent), model)
        return turn

"""Routing per ``(agent, sender)``: a tmp conversation, topics by key, the active key.

Lookups touch only router state and, the first time a topic is seen after a start,
storage (the newest session of a topic). They never wait on a conversation's lock, so a
slow run never blocks routing. A short per-pair load lock stops two simultaneous first
messages from loading the same topic twice.

Active topics are read from storage once, all together, at the first lookup, and kept in
step by ``switch_topic`` and ``new``: a pair's first message (or its first after an
eviction) costs no storage read. Once another replica may have changed them
(``reload_sender``), that copy is no longer trusted and each pair reads its own again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from runtime.conversation import Conversation
from runtime.errors import UnknownConversationError
from runtime.storage.base import Storage

RouteKey = tuple[str, str]


@dataclass(kw_only=True, slots=True)
class Routes:
    tmp: Conversation | None = None
    topics: dict[str, Conversation] = field(default_factory=dict)
    active: str | None = None


class Router:
    def __init__(self, storage: Storage | None) -> None:
        self._storage = storage
        self._routes: dict[RouteKey, Routes] = {}
        self._by_id: dict[str, Conversation] = {}
        self._loading: dict[RouteKey, asyncio.Lock] = {}
        # This process's copy of the stored active topics; None until read, or once
        # another replica may have changed them (then each pair reads its own).
        self._active: dict[RouteKey, str] | None = None
        self._active_trusted = True
        self._active_loading = asyncio.Lock()

    def find(self, conversation_id: str) -> Conversation | None:
        return self._by_id.get(conversation_id)

    def get(self, conversation_id: str) -> Conversation:
        conv = self._by_id.get(conversation_id)
        if conv is None:
            raise UnknownConversationError(f"no open conversation with id {conversation_id!r}")
        return conv

    def conversations(self) -> list[Conversation]:
        return list(self._by_id.values())

    def is_routed(self, conv: Conversation) -> bool:
        return self._by_id.get(conv.id) is conv

    async def get_or_create(self, agent: str, sender: str) -> Conversation:
        """The active topic's conversation if any, else the tmp one (created if needed)."""
        routes = await self._routes_for(agent, sender)
        if routes.active is not None:
            return await self._topic(agent, sender, routes, routes.active)
        if routes.tmp is None:
            routes.tmp = self._register(Conversation(agent=agent, sender=sender, topic_key=None))
        return routes.tmp

    async def active_topic(self, agent: str, sender: str) -> str | None:
        """The active topic key, loading the pair's router state if needed."""
        return (await self._routes_for(agent, sender)).active

    def current(self, agent: str, sender: str) -> Conversation | None:
        """What ``get_or_create`` would return, without creating or loading anything."""
        routes = self._routes.get((agent, sender))
        if routes is None:
            return None
        if routes.active is not None:
            return routes.topics.get(routes.active)
        return routes.tmp

    async def switch_topic(self, agent: str, sender: str, key: str) -> Conversation:
        """Make ``key`` active (resumed from storage or created). A run in the previous
        conversation goes on; the next message lands in the topic."""
        routes = await self._routes_for(agent, sender)
        conv = await self._topic(agent, sender, routes, key)
        if routes.active != key:
            routes.active = key
            if self._storage is not None:
                await self._storage.set_active_topic(agent, sender, key)
            if self._active is not None:
                self._active[(agent, sender)] = key
        return conv

    async def new(self, agent: str, sender: str) -> Conversation | None:
        """Drop the tmp conversation and deactivate the topic. Returns the dropped tmp
        conversation, for the caller to cancel its run."""
        routes = await self._routes_for(agent, sender)
        dropped = routes.tmp
        if dropped is not None:
            self._forget(dropped)
        if routes.active is not None:
            routes.active = None
            if self._storage is not None:
                await self._storage.set_active_topic(agent, sender, None)
            if self._active is not None:
                self._active.pop((agent, sender), None)
        return dropped

    def remove(self, conv: Conversation) -> None:
        """Take a conversation out of memory and out of its router; storage keeps it."""
        self._forget(conv)

    def topics_in_memory(self, agent: str, sender: str) -> list[Conversation]:
        routes = self._routes.get((agent, sender))
        return [] if routes is None else list(routes.topics.values())

    def active_key(self, agent: str, sender: str) -> str | None:
        routes = self._routes.get((agent, sender))
        return None if routes is None else routes.active

    def evict_idle(self, *, now: float, tmp_ttl: float, topic_ttl: float) -> int:
        """Drop conversations idle past their TTL from memory, so months of chats do not
        add up: a topic reloads from storage on its next message; a scratch conversation
        is gone, as scratch is meant to be. Anything running, queued or not yet saved
        stays. Returns how many were dropped."""
        evicted = 0
        for conv in list(self._by_id.values()):
            ttl = tmp_ttl if conv.is_tmp else topic_ttl
            busy = conv.run is not None or conv.has_queued or conv.title_task is not None
            unsaved = bool(conv.pending or conv.answered)
            if busy or unsaved or now - conv.updated_at < ttl:
                continue
            self._forget(conv)
            evicted += 1
        for key, routes in list(self._routes.items()):
            restorable = routes.active is None or self._storage is not None
            if routes.tmp is None and not routes.topics and restorable:
                del self._routes[key]
        return evicted

    def reload_sender(self, sender: str) -> None:
        """Forget the topics cached for ``sender`` (every agent) so the next lookup reads
        them from storage again: another replica may have moved them on. Scratch
        conversations are this replica's own and stay; anything busy stays."""
        self._active, self._active_trusted = None, False
        for key, routes in list(self._routes.items()):
            if key[1] != sender:
                continue
            topics = list(routes.topics.values())
            if any(c.run is not None or c.has_queued or c.pending for c in topics):
                continue
            for conv in topics:
                self._forget(conv)
            if routes.tmp is None:
                del self._routes[key]  # the active topic is read again too

    def _forget(self, conv: Conversation) -> None:
        self._by_id.pop(conv.id, None)
        routes = self._routes.get((conv.agent, conv.sender))
        if routes is None:
            return
        if routes.tmp is conv:
            routes.tmp = None
        elif conv.topic_key is not None and routes.topics.get(conv.topic_key) is conv:
            del routes.topics[conv.topic_key]

    def _register(self, conv: Conversation) -> Conversation:
        self._by_id[conv.id] = conv
        return conv

    async def _routes_for(self, agent: str, sender: str) -> Routes:
        key = (agent, sender)
        routes = self._routes.get(key)
        if routes is not None:
            return routes
        async with self._loading_guard(key):
            routes = self._routes.get(key)
            if routes is None:
                active = await self._stored_active(key)
                routes = self._routes.setdefault(key, Routes(active=active))
        return routes

    async def _stored_active(self, key: RouteKey) -> str | None:
        if self._storage is None:
            return None
        if self._active is None and self._active_trusted:
            async with self._active_loading:
                if self._active is None and self._active_trusted:
                    loaded = await self._storage.active_topics()
                    if self._active_trusted:  # no reload_sender while reading
                        self._active = loaded
        if self._active is not None:
            return self._active.get(key)
        return await self._storage.get_active_topic(*key)

    async def _topic(self, agent: str, sender: str, routes: Routes, key: str) -> Conversation:
        conv = routes.topics.get(key)
        if conv is not None:
            return conv
        async with self._loading_guard((agent, sender)):
            conv = routes.topics.get(key)
            if conv is None:
                loaded = await self._load_topic(agent, sender, key)
                # Re-check after the await: a loader holding a discarded guard may have won.
                conv = routes.topics.get(key)
                if conv is None:
                    conv = routes.topics[key] = self._register(loaded)
        return conv

    async def _load_topic(self, agent: str, sender: str, key: str) -> Conversation:
        if self._storage is not None:
            record = await self._storage.find_session(agent, sender, key)
            if record is not None:
                return Conversation(
                    id=record.id,
                    agent=agent,
                    sender=sender,
                    topic_key=key,
                    title=record.title,
                    history=await self._storage.load_context(record.id),
                    created_at=record.created_at,
                )
        return Conversation(agent=agent, sender=sender, topic_key=key)

    @contextlib.asynccontextmanager
    async def _loading_guard(self, key: RouteKey) -> AsyncIterator[None]:
        """Serialise first loads of a pair; the lock is dropped once idle so 10,000
        senders do not keep 10,000 locks."""
        lock = self._loading.get(key)
        if lock is None:
            lock = self._loading[key] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._loading.get(key) is lock:
                del self._loading[key]

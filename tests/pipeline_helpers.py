"""A pipeline over a scripted runtime and an in-memory platform."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from adapters.base import ChatTarget, InboundMessage
from gateway.cluster import Cluster
from gateway.delivery import DeliveryOptions
from gateway.pipeline import Pipeline
from gateway.policy import AdapterPolicy, BindingRule
from runtime.agent_runtime import AgentRuntime
from runtime.storage.base import Storage
from tests.fakes.memory_adapter import MemoryAdapter
from tests.fakes.scripted_provider import ScriptedProvider
from tests.runtime_helpers import make_runtime

_ids = itertools.count(1)


@dataclass(kw_only=True, slots=True)
class Rig:
    pipeline: Pipeline
    runtime: AgentRuntime
    adapter: MemoryAdapter
    provider: ScriptedProvider


@asynccontextmanager
async def rig(
    *,
    policy: AdapterPolicy | None = None,
    storage: Storage | None = None,
    limit: int = 4096,
    markup: Any = "plain",
    bindings: list[BindingRule] | None = None,
    delivery: DeliveryOptions | None = None,
    cluster: Cluster | None = None,
    **spec: Any,
) -> AsyncIterator[Rig]:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage, **spec)
    adapter = MemoryAdapter(limit=limit, markup=markup)
    pipeline = Pipeline(
        runtime,
        {"mem": adapter},
        {"mem": policy or AdapterPolicy(name="mem", edit_interval=0.05)},
        default_agent="bot",
        bindings=bindings or [],
        # Typing at once unless a test asks otherwise: most tests watch for it as a
        # sign the run is under way.
        delivery=delivery or DeliveryOptions(typing_interval=0.2, typing_delay=0.0),
        cluster=cluster,
    )
    task = asyncio.create_task(adapter.run(pipeline))
    await adapter.connected()
    try:
        yield Rig(pipeline=pipeline, runtime=runtime, adapter=adapter, provider=provider)
    finally:
        await runtime.shutdown(grace=1)
        await pipeline.drain(grace=1)
        adapter.stop()
        await task


def dm(text: str, *, user: str = "42", message_id: str | None = None, **kw: Any) -> InboundMessage:
    return InboundMessage(
        platform="mem",
        message_id=message_id or f"m{next(_ids)}",
        text=text,
        user_id=user,
        user_name=f"User {user}",
        scope=f"mem:user:{user}",
        target=ChatTarget(platform="mem", chat_id=f"dm{user}"),
        is_direct=True,
        addressed=True,
        **kw,
    )


def group(
    text: str, *, user: str = "42", addressed: bool = False, thread: str | None = None, **kw: Any
) -> InboundMessage:
    scope = f"mem:thread:{thread}" if thread else "mem:chat:g1"
    return InboundMessage(
        platform="mem",
        message_id=f"g{next(_ids)}",
        text=text,
        user_id=user,
        user_name=f"User {user}",
        scope=scope,
        topic=thread,
        target=ChatTarget(platform="mem", chat_id="g1", thread_id=thread),
        addressed=addressed,
        match={"chat": "g1"},
        **kw,
    )

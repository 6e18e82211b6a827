"""The fakes for the Telegram benchmark, in their own process (issue 11).

``python -m bench.telegram_host`` starts the fake Bot API and the fake OpenAI-compatible
server, plus a small control server, and prints one JSON line with their addresses. The
benchmark drives rounds through ``POST /round``; latencies are stamped here, where the
updates are queued and the replies arrive, so the bot's process spends its CPU on the
bot alone and ``process_time`` there is the bot's CPU per message.

A round: ``count`` new private chats each send one message, in one pattern:
``sequential`` (the next message after the previous reply), ``burst`` (all at once) or
``paced`` (one every ``gap`` seconds). Before it, ``words`` > 0 queues that many
``count`` scripted model replies of ``words`` chunks each (else the fake model echoes).
A chat's latency is from its update being queued to its first successful sendMessage.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

from tests.fakes.llm_server import FakeLLMServer, Script, Text
from tests.fakes.telegram_api import FakeTelegram

TIMEOUT = 180.0


class Host:
    def __init__(self, telegram: FakeTelegram, llm: FakeLLMServer) -> None:
        self.telegram = telegram
        self.llm = llm
        self._seen: dict[int, float] = {}
        self._index = 0

    def _scan(self) -> None:
        """Stamp each chat's first successful sendMessage as the fake records it."""
        calls = self.telegram.calls()
        now = time.perf_counter()
        for call in calls[self._index :]:
            if call.method == "sendMessage" and call.status == 200:
                self._seen.setdefault(int(call.params["chat_id"]), now)
        self._index = len(calls)

    async def _answered(self, chats: list[int]) -> None:
        def progress() -> bool:
            self._scan()
            return all(chat in self._seen for chat in chats)

        await self.telegram.wait_for(progress, timeout=TIMEOUT)

    async def round(self, count: int, pattern: str, gap: float, words: int) -> dict[str, Any]:
        fake = self.telegram
        if words:
            reply = Script(steps=[Text(f"word{i} ") for i in range(words)])
            self.llm.script(*[reply] * count)
        users = [fake.make_user(f"User {i}") for i in range(count)]
        chats = [fake.private_chat(user) for user in users]
        self._scan()
        queued: dict[int, float] = {}
        waiter: asyncio.Task[None] | None = None
        if pattern != "sequential":
            waiter = asyncio.create_task(self._answered(chats))
        for chat, user in zip(chats, users, strict=True):
            queued[chat] = time.perf_counter()
            fake.user_sends(chat, user, f"hello from chat {chat}")
            if pattern == "sequential":
                await self._answered([chat])
            elif gap:
                await asyncio.sleep(gap)  # pacing the arrivals, not waiting for a result
        if waiter is not None:
            await waiter
        latencies = [self._seen[chat] - queued[chat] for chat in chats]
        elapsed = max(self._seen[c] for c in chats) - min(queued.values())
        calls = sum(1 for c in fake.calls() if str(c.params.get("chat_id", "")) in _ids(chats))
        return {"latencies": latencies, "elapsed": elapsed, "calls": calls}

    async def handle_round(self, request: web.Request) -> web.Response:
        spec = await request.json()
        result = await self.round(spec["count"], spec["pattern"], spec["gap"], spec["words"])
        return web.json_response(result)


def _ids(chats: list[int]) -> set[str]:
    return {str(chat) for chat in chats}


async def main() -> None:
    async with FakeTelegram() as telegram:
        llm = FakeLLMServer()
        await llm.start()
        host = Host(telegram, llm)
        app = web.Application()
        app.router.add_post("/round", host.handle_round)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        info = {
            "control": f"http://127.0.0.1:{runner.addresses[0][1]}",
            "token": telegram.token,
            "base_url": telegram.base_url,
            "base_file_url": telegram.base_file_url,
            "llm_url": llm.url,
        }
        print(json.dumps(info), flush=True)
        try:
            # Until the benchmark closes our stdin.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            await runner.cleanup()
            await llm.stop()


if __name__ == "__main__":
    asyncio.run(main())

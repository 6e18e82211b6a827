"""Which sockets belong to which web chat client, and what each client was last shown.

A client is one browser (the page keeps its id in localStorage); each tab holds a socket,
and a frame for a client goes to all of its sockets, so every tab shows the same chat.
Per client this also remembers the title shown for each agent (the gateway's rename and
the runtime's title listener may both report one title) and which replies have typing
on (the indicator is off only when every reply's renderer has said so).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class Clients:
    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()  # every open socket, hello or not
        self._members: dict[str, set[web.WebSocketResponse]] = {}
        self._titles: dict[tuple[str, str], str] = {}  # (client, agent) -> title shown
        self._replying: dict[str, set[str]] = {}  # client -> requests whose typing is on

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._members

    def join(self, client_id: str, ws: web.WebSocketResponse) -> None:
        self._members.setdefault(client_id, set()).add(ws)

    def leave(self, client_id: str, ws: web.WebSocketResponse) -> None:
        """The socket left; with the client's last socket, what it was shown goes too."""
        sockets = self._members.get(client_id)
        if sockets is None:
            return
        sockets.discard(ws)
        if not sockets:
            del self._members[client_id]
            for key in [k for k in self._titles if k[0] == client_id]:
                del self._titles[key]

    async def broadcast(
        self, client_id: str, frame: dict[str, Any], *, skip: web.WebSocketResponse | None = None
    ) -> None:
        for ws in list(self._members.get(client_id, ())):
            if ws is not skip:
                await send(ws, frame)

    def note_title(self, client_id: str, agent: str, title: str) -> bool:
        """Remember ``title`` as shown; False when it already was."""
        if self._titles.get((client_id, agent)) == title:
            return False
        self._titles[(client_id, agent)] = title
        return True

    def is_replying(self, client_id: str) -> bool:
        return client_id in self._replying

    def typing(self, client_id: str, request: str, active: bool) -> bool:
        """Record one reply's typing state; True while any reply still has it on."""
        replying = self._replying.setdefault(client_id, set())
        if active:
            replying.add(request)
        else:
            replying.discard(request)
        if not replying:
            del self._replying[client_id]
        return bool(replying)


async def send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    if ws.closed:
        return
    try:
        await ws.send_str(json.dumps(frame, ensure_ascii=False))
    except ConnectionError as exc:  # the tab went away mid-send; its handler cleans up
        log.debug("web chat socket send failed: %s", exc)

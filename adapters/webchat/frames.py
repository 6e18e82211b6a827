"""The web chat's websocket protocol: frames from the page (validated with pydantic,
since they enter from outside) and the JSON frames the server sends back.

Every frame is a JSON object with a ``type``; the page ignores types it does not know,
so a new server frame (``delete``, approval buttons) needs no change to old pages, and a
new client frame is one more model in ``ClientFrame``.

Server frames: ``welcome`` (agents, each with provider kind, model and greeting),
``history`` (the shown conversation's turns and whether a reply is running), ``topics``,
``title``, ``message`` / ``edit`` (text plus its rendered HTML), ``typing``, ``ack``,
``user`` (a message typed in another tab), ``notice`` and ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from adapters.webchat.markdown import render_markdown
from runtime.transcript import Turn

MAX_TEXT = 32_000
MAX_TURNS = 200  # a history frame shows the newest turns; older ones are counted

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UserName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)]
Frame = dict[str, Any]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class HelloFrame(_Frame):
    type: Literal["hello"]
    client_id: Token
    name: UserName = ""
    agent: str | None = None


class MessageFrame(_Frame):
    type: Literal["message"]
    id: Token
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    agent: str | None = None
    name: UserName | None = None


class StopFrame(_Frame):
    type: Literal["stop"]
    agent: str | None = None


class DecisionFrame(_Frame):
    """A press of an approval request's Approve / Deny button."""

    type: Literal["decision"]
    request_id: Token
    approved: bool


ClientFrame = Annotated[
    HelloFrame | MessageFrame | StopFrame | DecisionFrame, Field(discriminator="type")
]
CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def text_frame(kind: Literal["message", "edit"], message_id: str, text: str) -> Frame:
    """An assistant message: the raw text (for copying and tests) and the safe HTML the
    page shows."""
    return {"type": kind, "id": message_id, "text": text, "html": render_markdown(text)}


def turn_frame(turn: Turn) -> Frame:
    frame: Frame = {"role": turn.role, "text": turn.text}
    if turn.role != "user":
        frame["html"] = render_markdown(turn.text)
    if turn.interrupted:
        frame["interrupted"] = True
    return frame


def history_frame(
    *,
    agent: str,
    topic: str | None,
    title: str,
    turns: Sequence[Turn],
    running: bool,
) -> Frame:
    shown = turns[-MAX_TURNS:]
    return {
        "type": "history",
        "agent": agent,
        "topic": topic,
        "title": title,
        "turns": [turn_frame(t) for t in shown],
        "earlier": len(turns) - len(shown),
        "running": running,
    }

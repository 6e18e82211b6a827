"""OpenAI-compatible chat completions over httpx, streamed (SSE, ``[DONE]`` terminated)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from runtime.history import (
    AssistantEntry,
    Entry,
    SummaryEntry,
    ToolResultEntry,
    UserEntry,
    render_assistant_text,
    render_user_text,
)
from runtime.prompts import SUMMARY_PREFIX
from runtime.providers.base import (
    ModelRequest,
    ProviderEvent,
    TextChunk,
    ThinkingChunk,
    ToolCallReady,
    ToolCallStarted,
    UsageReport,
)
from runtime.providers.body import BodyParser, StreamBroken, load_json
from runtime.providers.http_retry import HttpProvider
from runtime.tools import ToolSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(HttpProvider):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    default_base_url = DEFAULT_BASE_URL

    def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        headers = {"accept": "text/event-stream"}
        # OpenAI-compatible local servers often need no key at all.
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        body = request_body(request)
        return self._stream(request.model, "/chat/completions", headers, body, _Parser)


def request_body(request: ModelRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(to_messages(request.messages))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        # max_tokens is refused by OpenAI's reasoning models; compatible servers
        # that predate max_completion_tokens ignore unknown fields.
        "max_completion_tokens": request.max_tokens,
    }
    if request.tools:
        body["tools"] = tools_payload(request.tools)
    return body


def tools_payload(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in tools
    ]


def to_messages(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for entry in entries:
        match entry:
            case UserEntry():
                messages.append({"role": "user", "content": _user_content(entry)})
            case SummaryEntry():
                messages.append({"role": "user", "content": SUMMARY_PREFIX + entry.text})
            case AssistantEntry():
                message = _assistant_message(entry)
                if message is not None:
                    messages.append(message)
            case ToolResultEntry():
                messages.append(
                    {"role": "tool", "tool_call_id": entry.call_id, "content": entry.content}
                )
            case _:
                assert_never(entry)
    return messages


def _user_content(entry: UserEntry) -> str | list[dict[str, Any]]:
    text = render_user_text(entry)
    if not entry.images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts.extend(
        {
            "type": "image_url",
            "image_url": {"url": f"data:{image.media_type};base64,{image.data_base64}"},
        }
        for image in entry.images
    )
    return parts


def _assistant_message(entry: AssistantEntry) -> dict[str, Any] | None:
    text = render_assistant_text(entry)
    if not text and not entry.tool_calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if entry.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in entry.tool_calls
        ]
    return message


@dataclass(kw_only=True, slots=True)
class _PendingCall:
    id: str
    name: str
    announced: bool = False
    arguments: list[str] = field(default_factory=list)


class _Parser(BodyParser):
    """Folds chat-completion chunks (or one non-streamed ``chat.completion``) into
    provider events."""

    terminator = "[DONE]"

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[int, _PendingCall] = {}
        self.usage: UsageReport | None = None

    def on_event(self, event: str, data: bytes, out: list[ProviderEvent]) -> None:
        if data[:1] != b"{" and data.strip() == b"[DONE]":
            self.done = True
            return
        chunk = load_json(data)
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta and choice.get("index", 0) == 0:
                self._delta(delta, out)
            elif len(choices) > 1:
                self._other_choices(choices, out)
        self._extras(chunk)

    def _other_choices(self, choices: list[dict[str, Any]], out: list[ProviderEvent]) -> None:
        for choice in choices:
            if choice.get("index", 0) == 0:
                self._delta(choice.get("delta") or {}, out)

    def _extras(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk and isinstance(chunk["error"], dict):
            error = chunk["error"]
            raise StreamBroken(f"the server reported an error: {error.get('message', error)}")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = UsageReport(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )

    def on_message(self, message: dict[str, Any]) -> list[ProviderEvent]:
        """A ``chat.completion`` answer: its message reads as one whole delta."""
        self._extras(message)
        choices = message.get("choices") or ()
        reply = next((c.get("message") for c in choices if c.get("index", 0) == 0), None)
        if not isinstance(reply, dict):
            raise StreamBroken("the JSON answer has no message")
        calls = reply.get("tool_calls") or ()
        delta = {**reply, "tool_calls": [{**c, "index": i} for i, c in enumerate(calls)]}
        out: list[ProviderEvent] = []
        self._delta(delta, out)
        return out

    def _delta(self, delta: dict[str, Any], out: list[ProviderEvent]) -> None:
        content = delta.get("content")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(ThinkingChunk(text=reasoning))
        if content and isinstance(content, str):
            out.append(TextChunk(text=content))
        fragments = delta.get("tool_calls")
        if fragments:
            for fragment in fragments:
                self._tool_fragment(fragment, out)

    def _tool_fragment(self, fragment: dict[str, Any], out: list[ProviderEvent]) -> None:
        index = fragment.get("index")
        if not isinstance(index, int):
            # Some compatible servers omit the index; a new id means a new call.
            known = {c.id for c in self.calls.values()}
            new = not self.calls or (fragment.get("id") and fragment["id"] not in known)
            index = len(self.calls) if new else max(self.calls)
        function = fragment.get("function") or {}
        call = self.calls.setdefault(index, _PendingCall(id="", name=""))
        call.id = call.id or str(fragment.get("id") or "")
        call.name = call.name or str(function.get("name") or "")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments.append(arguments)
        if call.name and not call.announced:
            call.announced = True
            out.append(ToolCallStarted(index=index, name=call.name))

    def on_end(self) -> list[ProviderEvent]:
        events: list[ProviderEvent] = [
            ToolCallReady(
                index=index,
                id=call.id or f"call_{uuid.uuid4().hex[:24]}",
                name=call.name,
                arguments="".join(call.arguments) or "{}",
            )
            for index, call in sorted(self.calls.items())
        ]
        if self.usage is not None:
            events.append(self.usage)
        return events

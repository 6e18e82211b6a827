"""OpenAI-compatible chat completions over httpx, streamed (SSE, ``[DONE]`` terminated)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

import httpx

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
from runtime.providers.http_retry import (
    HttpProvider,
    StreamBroken,
    StreamCall,
    iter_sse,
    load_json,
)
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
        call = StreamCall(
            provider=self.name,
            model=request.model,
            url=f"{self.base_url}/chat/completions",
            headers=headers,
            body=request_body(request),
        )
        return self._stream(call, _parse)


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


class _StreamState:
    """Folds chat-completion chunks into provider events."""

    def __init__(self) -> None:
        self.calls: dict[int, _PendingCall] = {}
        self.usage: UsageReport | None = None

    def feed(self, chunk: dict[str, Any]) -> list[ProviderEvent]:
        error = chunk.get("error")
        if isinstance(error, dict):
            raise StreamBroken(f"the server reported an error: {error.get('message', error)}")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = UsageReport(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        events: list[ProviderEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) == 0:
                events.extend(self._delta(choice.get("delta") or {}))
        return events

    def _delta(self, delta: dict[str, Any]) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ThinkingChunk(text=reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextChunk(text=content))
        for fragment in delta.get("tool_calls") or ():
            events.extend(self._tool_fragment(fragment))
        return events

    def _tool_fragment(self, fragment: dict[str, Any]) -> list[ProviderEvent]:
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
            return [ToolCallStarted(index=index, name=call.name)]
        return []

    def finish(self) -> list[ProviderEvent]:
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


async def _parse(response: httpx.Response) -> AsyncGenerator[ProviderEvent, None]:
    state = _StreamState()
    async for sse in iter_sse(response):
        if sse.data.strip() == "[DONE]":
            break
        for event in state.feed(load_json(sse.data)):
            yield event
    else:
        raise StreamBroken("the stream ended without [DONE]", retryable=True)
    for event in state.finish():
        yield event

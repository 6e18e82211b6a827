"""Anthropic Messages API over httpx, streamed (SSE, ``message_stop`` terminated)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from runtime.history import (
    AssistantEntry,
    Entry,
    Image,
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

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# In-stream error types that mean "try again", as their HTTP twins (500, 529, 429) do.
_RETRYABLE_ERRORS = frozenset({"api_error", "overloaded_error", "rate_limit_error"})


class AnthropicProvider(HttpProvider):
    """A Claude model behind the Anthropic Messages API."""

    default_base_url = DEFAULT_BASE_URL

    def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        headers = {
            "x-api-key": self._api_key,
            "anthropic-version": API_VERSION,
            "accept": "text/event-stream",
        }
        body = request_body(request)
        return self._stream(request.model, "/v1/messages", headers, body, _Parser)


def request_body(request: ModelRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": to_messages(request.messages),
        "stream": True,
    }
    if request.system:
        body["system"] = request.system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
    return body


def to_messages(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Messages that alternate user/assistant: neighbours of one role are merged, and
    in a user message the tool results come first, as the API requires."""
    messages: list[dict[str, Any]] = []
    for entry in entries:
        role = "assistant" if isinstance(entry, AssistantEntry) else "user"
        blocks = _blocks(entry)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    for message in messages:
        if message["role"] == "user":
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    return messages


def _blocks(entry: Entry) -> list[dict[str, Any]]:
    match entry:
        case UserEntry():
            # Images first: the API documents that it reads them best before the text.
            return _image_blocks(entry.images) + _text_block(render_user_text(entry))
        case SummaryEntry():
            return _text_block(SUMMARY_PREFIX + entry.text)
        case AssistantEntry():
            return _text_block(render_assistant_text(entry)) + [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
                for c in entry.tool_calls
            ]
        case ToolResultEntry():
            content: str | list[dict[str, Any]] = entry.content
            if entry.images:  # tool results may carry images here (not on OpenAI)
                content = _text_block(entry.content) + _image_blocks(entry.images)
            return [
                {
                    "type": "tool_result",
                    "tool_use_id": entry.call_id,
                    "content": content,
                    "is_error": entry.is_error,
                }
            ]
        case _:
            assert_never(entry)


def _image_blocks(images: Sequence[Image]) -> list[dict[str, Any]]:
    return [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": i.media_type, "data": i.data_base64},
        }
        for i in images
    ]


def _text_block(text: str) -> list[dict[str, Any]]:
    # The API rejects empty text blocks.
    return [{"type": "text", "text": text}] if text else []


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(kw_only=True, slots=True)
class _PendingCall:
    index: int
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class _Parser(BodyParser):
    """Folds Messages stream events (or one complete ``message``) into provider events."""

    terminator = "message_stop"

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[int, _PendingCall] = {}  # by content block index
        self.input_tokens = 0
        self.output_tokens = 0

    def on_event(self, event: str, data: bytes, out: list[ProviderEvent]) -> None:
        payload = load_json(data)
        kind = payload.get("type")
        if kind == "content_block_delta":
            self._block_delta(int(payload.get("index", 0)), payload.get("delta") or {}, out)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            self._block_start(int(payload.get("index", 0)), block, out)
        elif kind == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            self._input_usage(usage)
            self.output_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            self._input_usage(usage)
            self.output_tokens = int(usage.get("output_tokens") or self.output_tokens)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise _reported(payload)
        # ping, content_block_stop and event types added later need no action.

    def on_message(self, message: dict[str, Any]) -> list[ProviderEvent]:
        """A complete ``message`` (a proxy that does not stream): its content blocks
        read as started blocks, tool inputs as whole JSON."""
        if message.get("type") == "error":
            raise _reported(message)
        out: list[ProviderEvent] = []
        for index, block in enumerate(message.get("content") or ()):
            self._block_start(index, block, out)
            if block.get("type") == "tool_use" and index in self.calls:
                self.calls[index].arguments.append(json.dumps(block.get("input") or {}))
        usage = message.get("usage") or {}
        self._input_usage(usage)
        self.output_tokens = int(usage.get("output_tokens") or 0)
        return out

    def _input_usage(self, usage: dict[str, Any]) -> None:
        # The prompt size the runtime compacts on includes cached tokens.
        parts = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        if any(usage.get(p) is not None for p in parts):
            self.input_tokens = sum(int(usage.get(p) or 0) for p in parts)

    def _block_start(self, index: int, block: dict[str, Any], out: list[ProviderEvent]) -> None:
        match block.get("type"):
            case "text" if block.get("text"):
                out.append(TextChunk(text=str(block["text"])))
            case "thinking" if block.get("thinking"):
                out.append(ThinkingChunk(text=str(block["thinking"])))
            case "tool_use":
                call = _PendingCall(
                    index=len(self.calls), id=str(block.get("id", "")), name=str(block.get("name"))
                )
                self.calls[index] = call
                out.append(ToolCallStarted(index=call.index, name=call.name))

    def _block_delta(self, index: int, delta: dict[str, Any], out: list[ProviderEvent]) -> None:
        match delta.get("type"):
            case "text_delta" if delta.get("text"):
                out.append(TextChunk(text=str(delta["text"])))
            case "thinking_delta" if delta.get("thinking"):
                out.append(ThinkingChunk(text=str(delta["thinking"])))
            case "input_json_delta" if index in self.calls:
                self.calls[index].arguments.append(str(delta.get("partial_json", "")))

    def on_end(self) -> list[ProviderEvent]:
        events: list[ProviderEvent] = [
            ToolCallReady(
                index=call.index,
                id=call.id,
                name=call.name,
                arguments="".join(call.arguments) or "{}",
            )
            for call in sorted(self.calls.values(), key=lambda c: c.index)
        ]
        events.append(
            UsageReport(prompt_tokens=self.input_tokens, completion_tokens=self.output_tokens)
        )
        return events


def _reported(payload: dict[str, Any]) -> StreamBroken:
    """An error the server reported in the body (in-stream, or as a 200 JSON answer)."""
    error = payload.get("error") or {}
    error_type = str(error.get("type") or "error")
    retryable = error_type in _RETRYABLE_ERRORS
    return StreamBroken(
        f"the server reported {error_type}: {error.get('message', 'no details')}",
        retryable=retryable,
        overloaded=retryable,
    )

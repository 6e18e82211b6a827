"""A local fake of two streaming LLM APIs: OpenAI chat completions and Anthropic Messages.

``POST /v1/chat/completions`` (provider base_url ``f"{server.url}/v1"``) and
``POST /v1/messages`` (base_url ``server.url``) share one FIFO queue of ``Script``s: each
request takes the next script, or, with the queue empty, streams "echo: <last user text>".
A script is a list of steps streamed in the real APIs' SSE shapes, or an HTTP error with
each API's error JSON. ``drop_after`` closes the connection mid-body (no terminator);
``gate`` holds the stream open before its end until the test sets it (or the server stops).
``json_reply`` answers with the API's complete non-streamed JSON message instead (some
proxies answer a streaming request that way). Every request is recorded (path,
lower-cased headers, JSON body) in ``server.requests``; ``connections`` counts the TCP
connections they arrived on (a client that reuses its connection opens one).
A request body the real API would refuse (a tool call left unanswered, a tool result
with no call, an empty text block) gets that API's 400 and consumes no script.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

Api = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning text; OpenAI-compatible servers name the delta field either way."""

    text: str
    delay: float = 0.0
    openai_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call whose arguments stream in ``fragments`` pieces."""

    name: str
    arguments: str = "{}"
    id: str | None = None
    fragments: int = 3
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamError:
    """An error reported inside a 200 stream; the stream then ends without terminator."""

    type: str = "overloaded_error"
    message: str = "Overloaded"
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes written as they are, e.g. a malformed ``data:`` line."""

    data: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported at the end (not a streamed step; its position is ignored)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    message: str | None = None
    retry_after: float | None = None
    code: str | None = None  # OpenAI error.code / Anthropic error.type; derived if None


Step = Text | Reasoning | Call | StreamError | Raw | Usage


@dataclass(frozen=True, kw_only=True, slots=True)
class Script:
    steps: Sequence[Step] = ()
    error: HttpError | None = None
    drop_after: int | None = None  # close the connection after this many streamed steps
    gate: asyncio.Event | None = None  # awaited before the stream ends (or the error)
    terminate: bool = True  # False: end the body cleanly but without [DONE]/message_stop
    json_reply: bool = False  # answer with one complete JSON message, not a stream


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    path: str
    headers: Mapping[str, str]
    json: dict[str, Any]


_OPENAI_ERRORS: Mapping[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-****."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Not allowed."),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded."),
}
_ANTHROPIC_ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission."),
    404: ("not_found_error", "model: {model}"),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(api: Api, error: HttpError, model: str) -> dict[str, Any]:
    if api == "openai":
        default = ("server_error", None, "Error.") if error.status >= 500 else _OPENAI_ERRORS[400]
        kind, code, message = _OPENAI_ERRORS.get(error.status, default)
        message = (error.message or message).replace("{model}", model)
        return {
            "error": {"message": message, "type": kind, "param": None, "code": error.code or code}
        }
    fallback = _ANTHROPIC_ERRORS[500 if error.status >= 500 else 400]
    kind, message = _ANTHROPIC_ERRORS.get(error.status, fallback)
    message = (error.message or message).replace("{model}", model)
    return {
        "type": "error",
        "error": {"type": error.code or kind, "message": message},
        "request_id": "req_fake",
    }


def json_message(api: Api, body: dict[str, Any], steps: Sequence[Step]) -> dict[str, Any]:
    """The API's complete, non-streamed answer made of ``steps`` (text, reasoning, calls)."""
    text = "".join(s.text for s in steps if isinstance(s, Text))
    reasoning = "".join(s.text for s in steps if isinstance(s, Reasoning))
    calls = [s for s in steps if isinstance(s, Call)]
    usage = next((s for s in steps if isinstance(s, Usage)), Usage(10, 5))
    model = str(body.get("model", "fake-model"))
    if api == "openai":
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = [
                {
                    "id": c.id or f"call_json{i}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for i, c in enumerate(calls)
            ]
        finish = "tool_calls" if calls else "stop"
        return {
            "id": "chatcmpl-json",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            },
        }
    content: list[dict[str, Any]] = []
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": "c2ln"})
    if text:
        content.append({"type": "text", "text": text})
    content.extend(
        {
            "type": "tool_use",
            "id": c.id or f"toolu_json{i}",
            "name": c.name,
            "input": json.loads(c.arguments),
        }
        for i, c in enumerate(calls)
    )
    return {
        "id": "msg_json",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    }


def last_user_text(messages: Sequence[Any]) -> str:
    """Text of the last user message that has text, in either API's message shape."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if texts:
                return "\n".join(texts)
    return ""


def openai_problem(body: dict[str, Any]) -> str | None:
    """What the real API would refuse with 400 in a request (the usual mistakes)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "[] is too short - 'messages'"
    unanswered: set[str] = set()
    for i, message in enumerate(messages):
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in unanswered:
                return (
                    f"Invalid parameter: messages[{i}]: messages with role 'tool' must be a "
                    "response to a preceeding message with 'tool_calls'."
                )
            unanswered.discard(message["tool_call_id"])
            continue
        if unanswered:
            break
        unanswered = {str(c.get("id")) for c in message.get("tool_calls") or ()}
    if unanswered:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(sorted(unanswered))}"
        )
    return None


def anthropic_problem(body: dict[str, Any]) -> str | None:
    """What the real API would refuse with 400 in a request (the usual mistakes)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    tool_uses: set[str] = set()
    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") not in ("user", "assistant") or not content:
            return f"messages.{i}: a message needs a user or assistant role and non-empty content"
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        kinds = [b.get("type") for b in blocks]
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return f"messages.{i}: text content blocks must be non-empty"
        results = {str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"}
        if tool_uses and results != tool_uses:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(tool_uses - results))}"
            )
        if results - tool_uses or kinds[: len(results)] != ["tool_result"] * len(results):
            return f"messages.{i}: unexpected `tool_result` block (unknown id or after text)"
        tool_uses = {str(b.get("id")) for b in blocks if b.get("type") == "tool_use"}
    return None


def _fragments(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)]


class _Writer:
    """State shared by both APIs' SSE encoders."""

    def __init__(
        self,
        resp: web.StreamResponse,
        body: dict[str, Any],
        ids: itertools.count[int],
        usage: Usage | None,
    ) -> None:
        self.resp = resp
        self.usage = usage
        self.model = str(body.get("model", "fake-model"))
        self.prompt_chars = len(json.dumps(body))
        self.completion_chars = 0
        self.tool_calls = 0
        self.ids = ids

    def usage_or_default(self) -> Usage:
        if self.usage is not None:
            return self.usage
        return Usage(-(-self.prompt_chars // 4), -(-self.completion_chars // 4))


class _OpenAIWriter(_Writer):
    def __init__(
        self,
        resp: web.StreamResponse,
        body: dict[str, Any],
        ids: itertools.count[int],
        usage: Usage | None,
    ) -> None:
        super().__init__(resp, body, ids, usage)
        self.id = f"chatcmpl-fake{next(ids)}"
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def _send(self, payload: dict[str, Any]) -> None:
        await self.resp.write(f"data: {json.dumps(payload)}\n\n".encode())

    async def _chunk(
        self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> None:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        await self._send(chunk)

    async def _delta(self, delta: dict[str, Any], finish: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        await self._chunk([choice])

    async def begin(self) -> None:
        await self._delta({"role": "assistant", "content": "", "refusal": None})

    async def step(self, step: Text | Reasoning | Call | StreamError) -> None:
        match step:
            case Text():
                self.completion_chars += len(step.text)
                await self._delta({"content": step.text})
            case Reasoning():
                self.completion_chars += len(step.text)
                await self._delta({step.openai_field: step.text})
            case Call():
                await self._call(step)
            case StreamError():
                error = {"message": step.message, "type": step.type, "param": None, "code": None}
                await self._send({"error": error})

    async def _call(self, call: Call) -> None:
        index = self.tool_calls
        self.tool_calls += 1
        first = {
            "index": index,
            "id": call.id or f"call_fake{next(self.ids)}",
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        await self._delta({"tool_calls": [first]})
        for piece in _fragments(call.arguments, call.fragments):
            self.completion_chars += len(piece)
            await self._delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})

    async def finish(self) -> None:
        await self._delta({}, "tool_calls" if self.tool_calls else "stop")
        if self.include_usage:
            u = self.usage_or_default()
            total = u.prompt_tokens + u.completion_tokens
            counts = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
            await self._chunk([], {**counts, "total_tokens": total})
        await self.resp.write(b"data: [DONE]\n\n")


class _AnthropicWriter(_Writer):
    def __init__(
        self,
        resp: web.StreamResponse,
        body: dict[str, Any],
        ids: itertools.count[int],
        usage: Usage | None,
    ) -> None:
        super().__init__(resp, body, ids, usage)
        self.block = -1
        self.open: str | None = None  # type of the open content block

    async def _event(self, name: str, payload: dict[str, Any]) -> None:
        await self.resp.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    async def begin(self) -> None:
        message: dict[str, Any] = {
            "id": f"msg_fake{next(self.ids)}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.usage_or_default().prompt_tokens, "output_tokens": 1},
        }
        await self._event("message_start", {"type": "message_start", "message": message})
        await self._event("ping", {"type": "ping"})

    async def _start_block(self, kind: str, block: dict[str, Any]) -> None:
        await self._close_block()
        self.block += 1
        self.open = kind
        start = {"type": "content_block_start", "index": self.block, "content_block": block}
        await self._event("content_block_start", start)

    async def _close_block(self) -> None:
        if self.open == "thinking":
            delta = {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}
            await self._delta(delta)
        if self.open is not None:
            stop = {"type": "content_block_stop", "index": self.block}
            await self._event("content_block_stop", stop)
        self.open = None

    async def _delta(self, delta: dict[str, Any]) -> None:
        payload = {"type": "content_block_delta", "index": self.block, "delta": delta}
        await self._event("content_block_delta", payload)

    async def step(self, step: Text | Reasoning | Call | StreamError) -> None:
        match step:
            case Text():
                if self.open != "text":
                    await self._start_block("text", {"type": "text", "text": ""})
                self.completion_chars += len(step.text)
                await self._delta({"type": "text_delta", "text": step.text})
            case Reasoning():
                if self.open != "thinking":
                    block = {"type": "thinking", "thinking": "", "signature": ""}
                    await self._start_block("thinking", block)
                self.completion_chars += len(step.text)
                await self._delta({"type": "thinking_delta", "thinking": step.text})
            case Call():
                await self._call(step)
            case StreamError():
                error = {"type": "error", "error": {"type": step.type, "message": step.message}}
                await self._event("error", error)

    async def _call(self, call: Call) -> None:
        self.tool_calls += 1
        call_id = call.id or f"toolu_fake{next(self.ids)}"
        block = {"type": "tool_use", "id": call_id, "name": call.name, "input": {}}
        await self._start_block("tool_use", block)
        # The real API opens every tool_use block with an empty partial_json.
        for piece in ["", *_fragments(call.arguments, call.fragments)]:
            self.completion_chars += len(piece)
            await self._delta({"type": "input_json_delta", "partial_json": piece})
        await self._close_block()

    async def finish(self) -> None:
        await self._close_block()
        u = self.usage_or_default()
        stop_reason = "tool_use" if self.tool_calls else "end_turn"
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        # The prompt size was reported in message_start.
        payload = {
            "type": "message_delta",
            "delta": delta,
            "usage": {"output_tokens": u.completion_tokens},
        }
        await self._event("message_delta", payload)
        await self._event("message_stop", {"type": "message_stop"})


class FakeLLMServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._peers: set[object] = set()
        self._scripts: deque[Script] = deque()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def connections(self) -> int:
        """TCP connections the requests so far arrived on."""
        return len(self._peers)

    @property
    def pending_scripts(self) -> int:
        return len(self._scripts)

    def script(self, *scripts: Script) -> None:
        """Enqueue the behaviour of the next request(s), in order."""
        self._scripts.extend(scripts)

    async def start(self) -> None:
        self._closing.clear()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """The first ``n`` requests, once they have arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests[:n]

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "anthropic")

    async def _serve(self, request: web.Request, api: Api) -> web.StreamResponse:
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(path=request.path, headers=headers, json=body))
        if request.transport is not None:
            # The client's (address, port) names the connection while it is open.
            self._peers.add(request.transport.get_extra_info("peername"))
        async with self._arrived:
            self._arrived.notify_all()
        problem = openai_problem(body) if api == "openai" else anthropic_problem(body)
        if problem is not None:
            return self._error_response(api, HttpError(400, message=problem), body)
        script = self._scripts.popleft() if self._scripts else self._echo(body)
        if script.error is not None:
            if script.gate is not None and not await self._wait(script.gate):
                return _dropped(request)
            return self._error_response(api, script.error, body)
        if script.json_reply:
            return web.json_response(json_message(api, body, script.steps))
        return await self._stream(request, api, body, script)

    def _echo(self, body: dict[str, Any]) -> Script:
        return Script(steps=[Text("echo: "), Text(last_user_text(body.get("messages") or []))])

    def _error_response(self, api: Api, error: HttpError, body: dict[str, Any]) -> web.Response:
        headers = {"x-request-id": "req_fake", "request-id": "req_fake"}
        if error.retry_after is not None:
            seconds = error.retry_after
            headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        payload = error_body(api, error, str(body.get("model", "")))
        return web.json_response(payload, status=error.status, headers=headers)

    async def _stream(
        self, request: web.Request, api: Api, body: dict[str, Any], script: Script
    ) -> web.StreamResponse:
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        writer_class = _OpenAIWriter if api == "openai" else _AnthropicWriter
        usage = next((s for s in script.steps if isinstance(s, Usage)), None)
        writer = writer_class(resp, body, self._ids, usage)
        try:
            if await self._play(writer, script):
                await resp.write_eof()
            else:
                _dropped(request)
        except ConnectionResetError:
            pass  # the client went away (a test closed its stream early)
        return resp

    async def _play(self, writer: _OpenAIWriter | _AnthropicWriter, script: Script) -> bool:
        """Stream the script; False when the connection must be dropped instead."""
        await writer.begin()
        steps = [s for s in script.steps if not isinstance(s, Usage)]
        for sent, step in enumerate(steps):
            if script.drop_after is not None and sent >= script.drop_after:
                return False
            if step.delay:
                await asyncio.sleep(step.delay)
            if isinstance(step, Raw):
                await writer.resp.write(step.data.encode())
            else:
                await writer.step(step)
            if isinstance(step, StreamError):
                return True
        if script.drop_after is not None and len(steps) >= script.drop_after:
            return False
        if script.gate is not None and not await self._wait(script.gate):
            return False
        if script.terminate:
            await writer.finish()
        return True

    async def _wait(self, gate: asyncio.Event) -> bool:
        """Wait for the test's gate; False when the server stops first."""
        gate_task = asyncio.ensure_future(gate.wait())
        closing_task = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({gate_task, closing_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gate_task.cancel()
            closing_task.cancel()
        return gate.is_set()


def _dropped(request: web.Request) -> web.Response:
    """Close the connection without finishing the body: the client sees a broken stream.
    ``close`` (not ``abort``) so the bytes already written still reach the client."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp quietly gives up sending this once it finds the connection closed.
    return web.Response(status=499)

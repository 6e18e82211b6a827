"""The model call a bare bot makes: one streamed OpenAI-style chat completion, read with
httpx and nothing else (the baseline the runtime's provider is measured against)."""

from __future__ import annotations

import json

import httpx


async def stream_completion(client: httpx.AsyncClient, url: str, text: str) -> str:
    """The reply's text to one user message, from the server at ``url``."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parts: list[str] = []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices") or []:
                parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)

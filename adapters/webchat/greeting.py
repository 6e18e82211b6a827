"""What the empty page says: which agent and model answer, and how to get help.

The provider kind is read from the agent's provider object (the runtime's registry is
all an adapter sees), so a gateway that fell back to the offline echo model says so in
plain words, with the fix, instead of leaving a new user wondering why every answer
repeats their message.
"""

from __future__ import annotations

from typing import Literal

from adapters.webchat.markdown import render_markdown
from runtime.agents import Agent
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.echo import EchoProvider
from runtime.providers.openai import OpenAIProvider

ProviderKind = Literal["echo", "openai", "anthropic", "other"]

_HELP_HINT = "Type a message to start, or `/help` for the commands."
_ECHO_FIX = (
    "To talk to a real model, set `OPENAI_API_KEY` or `ANTHROPIC_API_KEY` and restart "
    "the gateway (the default config picks the key up), or give the agent a provider "
    "and `model` in your config file (every option is in `config/gateway.example.toml`)."
)


def provider_kind(agent: Agent) -> ProviderKind:
    match agent.provider:
        case EchoProvider():
            return "echo"
        case OpenAIProvider():
            return "openai"
        case AnthropicProvider():
            return "anthropic"
        case _:
            return "other"


def greeting_text(agent: Agent) -> str:
    """Markdown: the agent, its model, and (for the echo model) how to set a real one."""
    kind = provider_kind(agent)
    if kind == "echo":
        return (
            f"Hi! **{agent.name}** answers here with the offline **echo** model: it "
            "repeats your words back, so you can try the gateway without a model "
            f"account.\n\n{_ECHO_FIX}\n\n{_HELP_HINT}"
        )
    via = "" if kind == "other" else f" ({kind})"
    return (
        f"Hi! **{agent.name}** answers here, using the model `{agent.spec.model}`{via}."
        f"\n\n{_HELP_HINT}"
    )


def agent_card(agent: Agent) -> dict[str, str]:
    """An agent as the page's welcome frame describes it."""
    text = greeting_text(agent)
    return {
        "name": agent.name,
        "provider": provider_kind(agent),
        "model": agent.spec.model,
        "greeting": text,
        "greeting_html": render_markdown(text),
    }

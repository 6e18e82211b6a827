"""Errors raised by the runtime.

AgentRuntimeError                 root of everything the runtime raises on purpose
├── UnknownAgentError             a message named an agent that is not registered
├── UnknownConversationError      an id that the router does not hold
├── ConversationBusyError         an operation that needs an idle conversation
├── StorageError                  the SQLite store could not be opened or written
└── ProviderError                 a model provider failed
    ├── ProviderAuthError         the provider refused the API key (401/403)
    ├── ProviderModelError        the model name is unknown to the provider
    ├── ProviderUnavailableError  connect errors, 429 or 5xx, retries exhausted
    └── ProviderStreamError       the stream broke or was malformed mid-reply
"""

from __future__ import annotations


class AgentRuntimeError(Exception):
    """Root of every error the runtime raises on purpose."""


class UnknownAgentError(AgentRuntimeError):
    pass


class UnknownConversationError(AgentRuntimeError):
    pass


class ConversationBusyError(AgentRuntimeError):
    pass


class StorageError(AgentRuntimeError):
    pass


class ProviderError(AgentRuntimeError):
    """A model provider failed; ``str(exc)`` is a full sentence naming the fix."""


class ProviderAuthError(ProviderError):
    pass


class ProviderModelError(ProviderError):
    pass


class ProviderUnavailableError(ProviderError):
    pass


class ProviderStreamError(ProviderError):
    pass

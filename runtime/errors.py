"""Errors raised by the runtime.

AgentRuntimeError                 root of everything the runtime raises on purpose
├── UnknownAgentError             a message named an agent that is not registered
├── UnknownConversationError      an id that the router does not hold
├── ConversationBusyError         an operation that needs an idle conversation
├── StorageError                  the SQLite store could not be opened or written
└── ProviderError                 a model provider failed
    ├── ProviderAuthError         the provider refused the API key (401/403)
    ├── ProviderModelError        the model name is unknown to the provider
    ├── ProviderRequestError      the provider refused the request itself (other 4xx)
    │   └── ProviderContextError  the conversation is too long for the model
    ├── ProviderUnavailableError  retries exhausted, by cause:
    │   ├── ProviderUnreachableError  connect errors and timeouts, or an unusable URL
    │   ├── ProviderRateLimitedError  429
    │   └── ProviderServerError       5xx (and in-stream overload errors)
    └── ProviderStreamError       the stream broke or was malformed

Every ``ProviderError`` carries three texts: ``str(exc)``, the detail for the log (a full
sentence naming the fix); ``user_message``, one short sentence for the chat user that
says what happened and whether resending helps; ``hint``, the operator's fix naming the
setting actually in use (shown only where the user is the operator, the web chat).
"""

from __future__ import annotations

from typing import ClassVar


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
    """A model provider failed; see the module docstring for its three texts.

    ``user_sentence`` is the class's user sentence; without one (the base class and
    ``ProviderUnavailableError``) the detail doubles as the user's sentence.
    """

    user_sentence: ClassVar[str | None] = None

    def __init__(self, detail: str, *, user_message: str | None = None, hint: str = "") -> None:
        super().__init__(detail)
        self.user_message = user_message or self.user_sentence or detail
        self.hint = hint


class ProviderAuthError(ProviderError):
    user_sentence = "I can't answer: the model provider refused the gateway's API key."


class ProviderModelError(ProviderError):
    user_sentence = "I can't answer: the configured model is not available."


class ProviderRequestError(ProviderError):
    user_sentence = "I can't answer: the model provider rejected the request."


class ProviderContextError(ProviderRequestError):
    user_sentence = (
        "This conversation is too long for the model; send /compact to shorten it "
        "or /new to start afresh."
    )


class ProviderUnavailableError(ProviderError):
    pass


class ProviderUnreachableError(ProviderUnavailableError):
    user_sentence = "I can't reach the model server right now; please try again later."


class ProviderRateLimitedError(ProviderUnavailableError):
    user_sentence = "The model is rate limited right now; please try again in a minute."


class ProviderServerError(ProviderUnavailableError):
    user_sentence = "The model service is having trouble; please try again in a few minutes."


class ProviderStreamError(ProviderError):
    # The one cause where resending the same message is the remedy.
    user_sentence = "Sorry, the reply failed. Please send your message again."

"""Errors raised by the gateway.

GatewayError          root of everything the gateway raises on purpose
├── ConfigError       the configuration file is missing or invalid; carries every problem
└── StartupError      the process cannot start (port in use, unusable host); one sentence
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One thing wrong with the configuration.

    ``path`` is the dotted key (``agents.helper.max_iterations``, ``bindings[0].agent``)
    or, for a problem with the file itself, the file's name. ``message`` says what is
    wrong and how to fix it, and never contains a configured value.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(GatewayError):
    """The configuration cannot be used; ``problems`` lists everything wrong at once."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class StartupError(GatewayError):
    """The gateway cannot start; ``str(exc)`` is one sentence naming the problem and the fix."""

"""Read, interpolate, resolve and validate the gateway's TOML configuration.

`load_config` works in passes over the parsed document, collecting problems as it goes
so that one run reports everything wrong at once:

1. parse the TOML (a syntax error stops here: nothing else can be trusted);
2. interpolate ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value,
   remembering which variable fed which dotted path so messages can name it;
3. resolve what the environment decides: ``kind = "auto"`` providers, ``enabled =
   "auto"`` adapters, an agent's model falling back to its provider's default, and
   ``system_prompt_file`` contents; then what the schema cannot judge
   (`gateway.config_checks`): relative paths anchored at the file's directory,
   malformed URLs, and an unset ``${VAR}`` in a key that cannot be empty;
4. validate with the pydantic schema (`gateway.config`), turning each error into a
   message of our own (`gateway.config_messages`: pydantic's would echo the offending
   value, which may be a secret);
5. cross-check names (`gateway.config_references`): agents, providers, tools and
   bindings that refer to each other.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import (
    ADAPTER_NAMES,
    ECHO_MODEL,
    MODE_KEYS,
    GatewayConfig,
    LoadNotes,
    adapter_mode,
    credential_keys,
    required_keys,
)
from gateway.config_checks import (
    join_path,
    nonblank,
    required_paths,
    resolve_paths,
    tables,
    unset_variable_problems,
    url_problems,
)
from gateway.config_messages import validation_problems
from gateway.config_references import cross_check
from gateway.errors import ConfigError, Problem
from runtime.tools import builtin_tools

__all__ = ["ConfigError", "Problem", "interpolate", "load_config"]

Table = dict[str, Any]

_REFERENCE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<body>[^}]*)\}|(?P<open>\{))")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")

# (kind, variable prefix, model when PREFIX_MODEL is unset), in order of preference: the
# first kind whose PREFIX_API_KEY is set wins; PREFIX_BASE_URL overrides the base URL.
_AUTO_KINDS = (
    ("openai", "OPENAI", "gpt-4o-mini"),
    ("anthropic", "ANTHROPIC", "claude-3-5-haiku-latest"),
)
_AUTO_TAKES = ("api_key", "base_url", "default_model")


def load_config(
    path: Path, env: Mapping[str, str], *, known_tools: Collection[str] | None = None
) -> GatewayConfig:
    """Load and validate ``path``; raise `ConfigError` listing every problem found.

    ``env`` is the environment used for interpolation and for every ``"auto"``
    decision. ``known_tools`` defaults to the runtime's built-in tools.
    """
    document = _read_toml(path)
    problems: list[Problem] = []
    sources: dict[str, str] = {}
    data = interpolate(document, env, sources=sources, problems=problems)
    notes = _resolve(data, env, sources, path, problems)
    resolve_paths(data, path.parent)
    problems.extend(url_problems(data, sources))
    # An unset variable is the root cause: it replaces what else was said about its key.
    unset = list(unset_variable_problems(document, data, env, required_paths(data)))
    problems[:] = [problem for problem in problems if problem.path not in _paths(unset)]
    tools = builtin_tools().names() if known_tools is None else known_tools
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        # A key the resolution pass already explained needs no second "required".
        explained = {problem.path for problem in problems}
        for problem, kind in validation_problems(exc, data, sources, env):
            if not (kind == "missing" and problem.path in explained):
                problems.append(problem)
    problems.extend(cross_check(data, sources, tools))
    problems = [problem for problem in problems if problem.path not in _paths(unset)] + unset
    if problems or config is None:
        # Sorting groups problems by section; sort is stable within one key.
        raise ConfigError(sorted(dict.fromkeys(problems), key=lambda problem: problem.path))
    return config.with_notes(notes)


def _paths(problems: list[Problem]) -> set[str]:
    return {problem.path for problem in problems}


def _read_toml(path: Path) -> Table:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        message = f"cannot read the configuration file ({reason}); check the path given with -c"
        raise ConfigError([Problem(path=str(path), message=message)]) from None
    except UnicodeDecodeError:
        message = "the configuration file is not UTF-8 text; save it as UTF-8"
        raise ConfigError([Problem(path=str(path), message=message)]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(path=str(path), message=_toml_message(exc))]) from None


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    reason = str(exc)
    match = _TOML_POSITION.search(reason)
    if match is None:
        return f"invalid TOML: {reason}; fix the syntax"
    reason = reason[: match.start()]
    where = f"line {match[1]}, column {match[2]}"
    return f"invalid TOML at {where}: {reason[:1].lower()}{reason[1:]}; fix the syntax there"


def interpolate(
    value: Any,
    env: Mapping[str, str],
    *,
    path: str = "",
    sources: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
) -> Any:
    """A copy of ``value`` with ``${VAR}``, ``${VAR:-default}`` and ``$$`` expanded.

    An unset ``${VAR}`` becomes "" (an ``"auto"`` setting then reads it as absent);
    ``${VAR:-default}`` uses the default when VAR is unset or empty, as the shell does.
    ``sources`` receives the first variable named at each dotted path.
    """
    sources = {} if sources is None else sources
    problems = [] if problems is None else problems
    if isinstance(value, str):
        return _expand(value, env, path, sources, problems)
    if isinstance(value, dict):
        return {
            key: interpolate(
                item, env, path=join_path(path, key), sources=sources, problems=problems
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(item, env, path=f"{path}[{index}]", sources=sources, problems=problems)
            for index, item in enumerate(value)
        ]
    return value


def _expand(
    text: str, env: Mapping[str, str], path: str, sources: dict[str, str], problems: list[Problem]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        parsed = _BODY.fullmatch(match["body"]) if match["body"] is not None else None
        if parsed is None:
            message = (
                "malformed ${...} reference; write ${NAME} or ${NAME:-default}, "
                "or $$ for a literal $"
            )
            problems.append(Problem(path=path, message=message))
            return ""
        sources.setdefault(path, parsed["name"])
        value = env.get(parsed["name"], "")
        if not value and parsed["default"] is not None:
            return parsed["default"]
        return value

    return _REFERENCE.sub(replace, text)


# --- pass 3: what the environment decides -------------------------------------------


def _resolve(
    data: Table,
    env: Mapping[str, str],
    sources: Mapping[str, str],
    path: Path,
    problems: list[Problem],
) -> LoadNotes:
    provider_notes, echo_fallback = _resolve_providers(data, env, problems)
    adapter_notes = _resolve_adapters(data, sources, problems)
    _resolve_agents(data, path.parent, problems)
    return LoadNotes(
        source=path.resolve(),
        providers=provider_notes,
        adapters=adapter_notes,
        echo_fallback=echo_fallback,
        key_sources=_key_sources(data, sources, provider_notes),
    )


def _key_sources(
    data: Table, sources: Mapping[str, str], auto: Mapping[str, str]
) -> dict[str, str]:
    """The environment variable each provider's API key came from: the one ``kind =
    "auto"`` took, or the one ``${VAR}`` named; a key written in the file has none."""
    prefixes = {kind: prefix for kind, prefix, _ in _AUTO_KINDS}
    found: dict[str, str] = {}
    for name, section in tables(data.get("providers")):
        kind = section.get("kind")
        where = f"providers.{join_path('', name)}.api_key"
        if name in auto and isinstance(kind, str) and kind in prefixes:
            found[name] = f"{prefixes[kind]}_API_KEY"
        elif where in sources:
            found[name] = sources[where]
    return found


def _resolve_providers(
    data: Table, env: Mapping[str, str], problems: list[Problem]
) -> tuple[dict[str, str], tuple[str, ...]]:
    notes: dict[str, str] = {}
    echo: list[str] = []
    for name, section in tables(data.get("providers")):
        if section.get("kind") != "auto":
            continue
        for key in _AUTO_TAKES:
            if nonblank(section.get(key)):
                message = (
                    'not used with kind = "auto", which takes it from the environment '
                    "(OPENAI_* or ANTHROPIC_* variables); remove it, or set kind explicitly"
                )
                problems.append(
                    Problem(path=f"providers.{join_path('', name)}.{key}", message=message)
                )
        for kind, prefix, model in _AUTO_KINDS:
            if env.get(f"{prefix}_API_KEY"):
                section.update(kind=kind, api_key=env[f"{prefix}_API_KEY"])
                section["default_model"] = env.get(f"{prefix}_MODEL") or model
                if env.get(f"{prefix}_BASE_URL"):
                    section["base_url"] = env[f"{prefix}_BASE_URL"]
                notes[name] = f"auto: {prefix}_API_KEY set"
                break
        else:
            section.update(kind="echo", default_model=ECHO_MODEL)
            notes[name] = "auto: no OPENAI_API_KEY or ANTHROPIC_API_KEY set"
            echo.append(name)
    return notes, tuple(echo)


def _flag(value: object) -> bool | str | None:
    """True, False, "auto", or None for a value the schema will reject."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "auto":
            return "auto"
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def _resolve_adapters(
    data: Table, sources: Mapping[str, str], problems: list[Problem]
) -> dict[str, str]:
    notes: dict[str, str] = {}
    adapters = data.get("adapters")
    sections = dict(tables(adapters))
    for name in ADAPTER_NAMES:
        section = sections.get(name)
        if section is None:
            notes[name] = "not configured"
            continue
        flag = _flag(section.get("enabled", True))
        if flag == "auto":
            keys = credential_keys(name, section)
            missing = [key for key in keys if not nonblank(section.get(key))]
            flag = section["enabled"] = not missing
            labels = " and ".join(_label(name, key, sources) for key in missing or keys)
            if not keys:
                notes[name] = "auto: needs no credentials"
            else:
                notes[name] = f"auto: {labels} {'not set' if missing else 'set'}"
        elif flag is not None:
            notes[name] = f"enabled = {str(flag).lower()}"
        if flag is True:
            problems.extend(_missing_credentials(name, section, sources))
    return notes


def _label(adapter: str, key: str, sources: Mapping[str, str]) -> str:
    """How to name a credential in a message: its variable if interpolated, else its key."""
    path = f"adapters.{adapter}.{key}"
    return sources.get(path, path)


def _missing_credentials(
    adapter: str, section: Table, sources: Mapping[str, str]
) -> Iterator[Problem]:
    mode = adapter_mode(adapter, section)
    for key in required_keys(adapter, section):
        if not nonblank(section.get(key)):
            when = "when the adapter is enabled"
            if key in MODE_KEYS:
                when = f'in mode = "{mode}" {when}'
            message = f"required {when}; set {_label(adapter, key, sources)}"
            yield Problem(path=f"adapters.{adapter}.{key}", message=message)


def _resolve_agents(data: Table, base_dir: Path, problems: list[Problem]) -> None:
    providers = dict(tables(data.get("providers")))
    for name, agent in tables(data.get("agents")):
        where = f"agents.{join_path('', name)}"
        provider_name = agent.get("provider")
        if not nonblank(agent.get("model")) and isinstance(provider_name, str):
            problems.extend(_fill_model(agent, where, providers.get(provider_name), provider_name))
        _read_prompt_file(agent, where, base_dir, problems)


def _fill_model(
    agent: Table, where: str, provider: Table | None, provider_name: str
) -> Iterator[Problem]:
    if provider is None:
        # The cross check reports the unknown provider; "no model" on top would be noise.
        agent["model"] = ""
        return
    fallback = nonblank(provider.get("default_model"))
    if fallback is None and provider.get("kind") == "echo":
        fallback = ECHO_MODEL
    if fallback is not None:
        agent["model"] = fallback
        return
    agent.pop("model", None)
    message = (
        f"no model given; set {where}.model, "
        f"or default_model on providers.{join_path('', provider_name)}"
    )
    yield Problem(path=f"{where}.model", message=message)


def _read_prompt_file(agent: Table, where: str, base_dir: Path, problems: list[Problem]) -> None:
    file_name = nonblank(agent.get("system_prompt_file"))
    if file_name is None:
        return
    if "system_prompt" in agent:
        message = "cannot be used together with system_prompt; keep one of the two"
        problems.append(Problem(path=f"{where}.system_prompt_file", message=message))
        return
    file_path = base_dir / file_name
    try:
        agent["system_prompt"] = file_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        message = (
            f"cannot read {file_path} ({reason}); the path is relative to the "
            "configuration file's directory"
        )
        problems.append(Problem(path=f"{where}.system_prompt_file", message=message))

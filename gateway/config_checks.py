"""Loader passes that judge values the schema cannot: URLs, unset variables, file paths.

`gateway.config_loader` calls these on the interpolated document, before validation:
`resolve_paths` anchors relative paths at the configuration file's directory (so the
data directory does not depend on where the process was started); `url_problems` and
`unset_variable_problems` add `Problem`s that name the key and the fix, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import Problem

Table = dict[str, Any]

DEFAULT_STORAGE_PATH = "data/gateway.db"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# Every key that holds an endpoint, with the schemes it may use.
_HTTP = ("http", "https")
_URL_KEYS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "telegram": {"base_url": _HTTP, "base_file_url": _HTTP, "webhook_url": _HTTP},
    "discord": {"api_base": _HTTP, "gateway_url": ("ws", "wss")},
    "slack": {"api_url": _HTTP},
}
# A bare ${NAME} (no :- default), as written in the file.
_BARE_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Keys the gateway cannot do without, beyond those the schema marks required and the
# adapter credentials the loader already explains.
_KEYED_KINDS = ("openai", "anthropic")


def join_path(path: str, key: object) -> str:
    """``path.key``, quoting a key that TOML would need quoted."""
    text = str(key)
    if not _BARE_KEY.fullmatch(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}.{text}" if path else text


def nonblank(value: object) -> str | None:
    """A string value that says something; blank (an unset ``${VAR}``) counts as unset."""
    return value if isinstance(value, str) and value.strip() else None


def tables(value: object) -> Iterator[tuple[str, Table]]:
    """The ``[section.NAME]`` tables under a section, skipping malformed entries."""
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, dict):
                yield str(name), item


def resolve_paths(data: Table, base_dir: Path) -> None:
    """Make ``storage.path`` absolute, relative to ``base_dir`` (the config's directory)."""
    storage = data.setdefault("storage", {})
    if not isinstance(storage, dict):
        return  # the schema reports it
    raw = storage.get("path", DEFAULT_STORAGE_PATH)
    if isinstance(raw, str) and raw.strip():
        path = Path(raw).expanduser()
        storage["path"] = str(path if path.is_absolute() else base_dir.resolve() / path)


def url_problems(data: Table, sources: Mapping[str, str]) -> Iterator[Problem]:
    """A malformed endpoint URL (no scheme, no host, spaces) is a problem at its key."""
    for name, section in tables(data.get("providers")):
        yield from _check_url(f"providers.{name}.base_url", section.get("base_url"), _HTTP, sources)
    for adapter, section in tables(data.get("adapters")):
        for key, schemes in _URL_KEYS.get(adapter, {}).items():
            yield from _check_url(f"adapters.{adapter}.{key}", section.get(key), schemes, sources)


def _check_url(
    path: str, value: object, schemes: tuple[str, ...], sources: Mapping[str, str]
) -> Iterator[Problem]:
    if not isinstance(value, str) or not value.strip():
        return  # absent or blank: the default applies
    if _is_url(value, schemes):
        return
    example = f"{schemes[-1]}://host/path"
    message = f"not a valid URL; write it as {example} ({' or '.join(schemes)})"
    variable = sources.get(path)
    if variable is not None:
        message += f"; the value comes from ${{{variable}}}"
    yield Problem(path=path, message=message)


def _is_url(value: str, schemes: tuple[str, ...]) -> bool:
    if any(char.isspace() for char in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)


def unset_variable_problems(
    document: Table, data: Table, env: Mapping[str, str], required: set[str]
) -> Iterator[Problem]:
    """A bare ``${VAR}`` that is unset, in a key that cannot be empty, is a problem.

    ``required`` holds the dotted paths the schema requires; provider keys of kinds that
    need one are added here. ``${VAR:-}`` is the way to say "optional".
    """
    needed = set(required)
    for name, section in tables(data.get("providers")):
        if section.get("kind") in _KEYED_KINDS:
            needed.add(f"providers.{name}.api_key")
    for path, text in _strings(document, ""):
        if path not in needed:
            continue
        for variable in _BARE_REFERENCE.findall(text):
            if not env.get(variable):
                message = (
                    f"${{{variable}}} is not set; export {variable}=... before starting, "
                    f"or write ${{{variable}:-default}} to give a default"
                )
                yield Problem(path=path, message=message)


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))


def required_paths(data: Table) -> set[str]:
    """Dotted paths the schema requires, for the tables present in ``data``."""
    paths = {"default_agent"}
    for name, _ in tables(data.get("agents")):
        paths |= {f"agents.{name}.provider", f"agents.{name}.model"}
    for name, _ in tables(data.get("providers")):
        paths.add(f"providers.{name}.kind")
    return paths

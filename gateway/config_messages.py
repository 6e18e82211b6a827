"""Pydantic's validation errors in the loader's words: ``dotted.path: what is wrong and
how to fix it``, never echoing the offending value (it may be a secret)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gateway.config_checks import join_path
from gateway.config_schema import field_names_at, is_positive_int
from gateway.errors import Problem

Table = dict[str, Any]


def validation_problems(
    exc: ValidationError, data: Table, sources: Mapping[str, str], env: Mapping[str, str]
) -> Iterator[tuple[Problem, str]]:
    # include_input=False: the offending value may be a secret and must not leak.
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        path = ""
        for part in loc:
            path = f"{path}[{part}]" if isinstance(part, int) else join_path(path, part)
        message = _error_message(error, data)
        variable = sources.get(path)
        if variable is not None and not env.get(variable) and error["type"] != "extra_forbidden":
            message += f" (the value comes from ${{{variable}}}, which is not set)"
        yield Problem(path=path or "(top level)", message=message), error["type"]


_SIMPLE_MESSAGES = {
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": 'must be a string, in quotes: key = "..."',
    "list_type": 'must be a list, e.g. ["a", "b"]',
    "dict_type": "must be a table: a [section] or { key = value }",
    "model_type": "must be a table: a [section] or { key = value }",
    "model_attributes_type": "must be a table: a [section] or { key = value }",
    "string_pattern_mismatch": 'must start with "/"',  # the only pattern: webchat.path
}


def _error_message(error: ErrorDetails, data: Table) -> str:
    kind = error["type"]
    loc = error["loc"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return f"required; add {loc[-1]} = ..." if isinstance(loc[-1], str) else "required"
    if kind in ("int_parsing", "int_type", "int_from_float", "greater_than"):
        if is_positive_int(loc):
            return "must be a positive integer"
        if kind == "greater_than":
            return f"must be greater than {ctx.get('gt', 0):g}"
        return "must be a whole number"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge', 0):g}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le', 0):g}"
    if kind in ("bool_parsing", "bool_type"):
        if loc[-1] == "enabled" and loc[0] == "adapters":
            return 'must be true, false or "auto"'
        return "must be true or false"
    if kind == "string_type" and "allowed_users" in loc:
        return "must be a user id: a string or an integer"
    if kind == "literal_error":
        return _literal_message(loc, str(ctx.get("expected", "")), data)
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    simple = _SIMPLE_MESSAGES.get(kind)
    return simple if simple is not None else error["msg"][:1].lower() + error["msg"][1:]


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    known = field_names_at(loc[:-1])
    what = "unknown adapter" if loc[:-1] == ("adapters",) else "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"{what}; did you mean {close[0]}?"
    if known:
        return f"{what}; expected one of: {', '.join(known)}"
    return what


def _literal_message(loc: tuple[int | str, ...], expected: str, data: Table) -> str:
    # pydantic writes 'a', 'b' or 'c'; TOML strings are double-quoted.
    choices = re.findall(r"'([^']*)'", expected)
    quoted = [f'"{choice}"' for choice in choices]
    message = "must be " + " or ".join(filter(None, [", ".join(quoted[:-1]), quoted[-1]]))
    value = _value_at(data, loc)
    close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
    return f'{message}; did you mean "{close[0]}"?' if close else message


def _value_at(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        inside_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (inside_list or (isinstance(data, dict) and part in data)):
            return None
        data = data[part]
    return data

"""Schema introspection for the loader's error messages.

A pydantic error names a location (``("adapters", "telegram", "tokn")``); these walk the
`GatewayConfig` models along it to say which keys the table there allows, or whether a
key is declared as a positive integer, so a message can suggest the key meant.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from gateway.config import GatewayConfig


def _strip_annotation(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType):
            args = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that the table at ``loc`` (a pydantic error location) is validated as."""
    current: Any = GatewayConfig
    for part in loc:
        if _is_model(current):
            field_info = current.model_fields.get(part) if isinstance(part, str) else None
            if field_info is None:
                return None
            current = _strip_annotation(field_info.annotation)
        elif get_origin(current) in (dict, list):
            current = _strip_annotation(get_args(current)[-1])
        else:
            return None
    return current if _is_model(current) else None


def field_names_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the table at ``loc``; empty when ``loc`` is not a table."""
    model = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def is_positive_int(loc: tuple[int | str, ...]) -> bool:
    """Whether the key at ``loc`` is declared as an integer greater than zero."""
    model = _model_at(loc[:-1])
    field_info = model.model_fields.get(str(loc[-1])) if model is not None else None
    if field_info is None or _strip_annotation(field_info.annotation) is not int:
        return False
    return any(getattr(item, "gt", None) == 0 for item in field_info.metadata)

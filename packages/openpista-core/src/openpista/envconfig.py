"""Environment variables read into the nested table of a pydantic model.

``OPENPISTA_AGENT__MAX_TOOL_ROUNDS=7`` becomes ``{"agent": {"max_tool_rounds": "7"}}``: the
rules of pydantic-settings' ``env_prefix`` / ``env_nested_delimiter`` source (names in any
case, ``__`` between levels, a value for a list, table or model option written as JSON),
without its import (~140 ms of CPU on every start, most of ``openpista.config``'s cost).
Values stay text otherwise; the model converts them when it validates the table.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import Mapping, Sequence, Set
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Secret

DELIMITER = "__"


class UnparsedValueError(ValueError):
    """A list, table or model option whose variable is not JSON; ``field`` is the top-level
    option it belongs to."""

    def __init__(self, field: str) -> None:
        super().__init__(f"the value for {field!r} is not valid JSON")
        self.field = field


def environment_tree(
    model: type[BaseModel], prefix: str, environ: Mapping[str, str], skip: Set[str] = frozenset()
) -> dict[str, Any]:
    """The options of ``model`` (fields in ``skip`` left out) set by the variables named
    ``prefix`` + option path, as a nested table. Raises :class:`UnparsedValueError`."""
    env = {name.lower(): value for name, value in environ.items()}
    prefix = prefix.lower()
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        var = f"{prefix}{name}"
        value: Any = env.get(var)
        is_complex, lenient = _kind(field.annotation)
        if not is_complex:
            if value is not None:
                found[name] = value
            continue
        if value is not None:
            try:
                value = json.loads(value)
            except ValueError:
                if not lenient:
                    raise UnparsedValueError(name) from None
        nested = _explode(field.annotation, f"{var}{DELIMITER}", env, name)
        if value is None:
            if nested:
                found[name] = nested
        else:
            found[name] = deep_update(value, nested) if isinstance(value, dict) else value
    return found


def deep_update(base: dict[str, Any], *updates: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each of ``updates`` laid over it, tables merged key by key."""
    merged = dict(base)
    for update in updates:
        for key, value in update.items():
            if isinstance(merged.get(key), dict) and isinstance(value, dict):
                merged[key] = deep_update(merged[key], value)
            else:
                merged[key] = value
    return merged


def _explode(annotation: Any, prefix: str, env: Mapping[str, str], name: str) -> dict[str, Any]:
    """The variables under ``prefix`` (one option of type ``annotation``) as a table."""
    is_dict = _is_subclass(get_origin(annotation) or annotation, dict)
    result: dict[str, Any] = {}
    for var, value in env.items():
        if not var.startswith(prefix):
            continue
        *keys, last = var[len(prefix) :].split(DELIMITER)
        table: Any = result
        target: _Target | None = (annotation, True)
        for key in keys:
            target = _next(target, key)
            if isinstance(table, dict):
                table = table.setdefault(key, {})
        target = _next(target, last)
        decoded: Any = value
        if value and (target is not None or is_dict):
            if target is None:  # under a free-form table: JSON if it is JSON
                is_complex, lenient = True, True
            elif target[1]:  # a declared option
                is_complex, lenient = _kind(target[0])
            else:  # the value type of a table
                is_complex, lenient = _complex(target[0]), True
                if not is_complex and _union_is_complex(target[0]):
                    decoded = _json_container(value)
            if is_complex:
                try:
                    decoded = json.loads(value)
                except ValueError:
                    if not lenient:
                        raise UnparsedValueError(name) from None
        if isinstance(table, dict):
            table[last] = decoded
    return result


_Target = tuple[Any, bool]
"""A type met on the way down an option path, and whether it is a declared model field
(else the value type of a table)."""


def _next(target: _Target | None, key: str) -> _Target | None:
    """The type found under ``key`` of ``target``: a table's value type or a model's field."""
    if target is None:
        return None
    annotation = _unwrap(target[0])
    if _is_subclass(get_origin(annotation), dict):
        args = get_args(annotation)
        return (args[-1], False) if args else None
    for member in get_args(annotation):
        found = _next((member, False), key)
        if found is not None:
            return found
    if _is_subclass(annotation, BaseModel):
        for field_name, field in annotation.model_fields.items():
            if field_name.lower() == key:
                return field.annotation, True
    return None


def _kind(annotation: Any) -> tuple[bool, bool]:
    """Whether a declared option is read as JSON, and whether text that is not JSON is kept
    (a union of a list or table with a plain type)."""
    if _complex(annotation):
        return True, False
    if _is_union(annotation) and _union_is_complex(annotation):
        return True, True
    return False, False


def _complex(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _complex(get_args(annotation)[0])
    if _is_subclass(origin, Secret):
        return False
    return _complex_type(annotation) or _complex_type(origin)


def _complex_type(annotation: Any) -> bool:
    if annotation is None or _is_subclass(annotation, (str, bytes)):
        return False
    containers = (BaseModel, Mapping, Sequence, Set, tuple, set, frozenset, deque)
    return _is_subclass(annotation, containers) or dataclasses.is_dataclass(annotation)


def _union_is_complex(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return _is_union(annotation) and any(
        _complex(member) or _union_is_complex(member) for member in get_args(annotation)
    )


def _json_container(value: str) -> Any:
    """``value`` decoded when it is a JSON list or object, else as is."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, list | dict) else value


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _is_subclass(candidate: Any, types: type | tuple[type, ...]) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, types)

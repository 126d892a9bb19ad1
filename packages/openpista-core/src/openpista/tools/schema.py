"""JSON Schemas of tool arguments that come from data (a SKILL.md, a plugin manifest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as the schema of an arguments object (``type`` defaults to ``object``);
    raises ``ValueError`` when it describes something else or is not a valid JSON Schema."""
    from jsonschema import SchemaError  # type: ignore[import-untyped,unused-ignore]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped,unused-ignore]

    schema = {"type": "object", **schema}
    if schema["type"] != "object":
        raise ValueError("`parameters` must describe an object (`type: object`)")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"`parameters` is not a valid JSON Schema: {exc.message}") from None
    return schema


def schema_validator(
    tool_name: str, schema: dict[str, Any]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A :attr:`~openpista.tools.Tool.validator` checking arguments against ``schema``; a
    mismatch is a ``ValueError`` naming the tool and the first bad argument."""
    # Imported here: jsonschema is only needed once such a tool exists.
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped,unused-ignore]

    checker = validator_for(schema)(schema)

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        error = best_match(checker.iter_errors(arguments))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path)
            problem = f"argument '{where}': {error.message}" if where else error.message
            raise ValueError(f"invalid arguments for tool {tool_name}: {problem}")
        return arguments

    return validate

"""Reading loosely typed YAML: fields as Argo's Go types would read them, whatever was written."""

from __future__ import annotations

import json
from typing import Any


def to_json(value: Any) -> str:
    """The value as JSON text, non-ASCII kept as written."""
    return json.dumps(value, ensure_ascii=False, default=str)


def as_str(value: Any) -> str:
    """A value as Argo's string fields (and AnyString) read it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else to_json(value)


def as_dict(value: Any) -> dict[str, Any]:
    """The value if it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """The value if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings in a list, skipping anything else."""
    return [item for item in as_list(value) if isinstance(item, dict)]


def set_or_pop(obj: dict[str, Any], key: str, value: Any) -> None:
    """Set `obj[key]`, or remove it when `value` is None (a Go nil pointer)."""
    if value is None:
        obj.pop(key, None)
    else:
        obj[key] = value

"""Closing schemas: every object that lists its properties rejects properties it does not list.

Kubernetes prunes unknown fields instead of rejecting them, and Hera's models drop them, so a
misspelled field would otherwise vanish silently. Objects marked
`x-kubernetes-preserve-unknown-fields` (free-form by design) stay open.
"""

from __future__ import annotations

from typing import Any


def close_schema(node: Any) -> Any:
    """Return a copy of a JSON schema with every listed-properties object closed."""
    if isinstance(node, list):
        return [close_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: close_schema(value) for key, value in node.items()}
    if (
        isinstance(closed.get("properties"), dict)
        and "additionalProperties" not in closed
        and "patternProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed

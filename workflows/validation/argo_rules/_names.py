"""Argo's rules for names: of objects, of templates, steps and tasks, and of inputs and outputs."""

from __future__ import annotations

import json
import re
from typing import Any

from workflows.validation.argo_rules._yaml import as_dict, as_str

_FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_PARAM_NAME = re.compile(r"[-a-zA-Z0-9_]+")
_FIELD_NAME_ERROR = (
    "name must consist of alpha-numeric characters or '-', and must start with an alpha-numeric "
    "character (e.g. My-name1-2, 123-NAME)"
)
_PARAM_NAME_ERROR = (
    "Parameter/Artifact name must consist of alpha-numeric characters, '_' or '-' "
    "e.g. my_param_1, MY-PARAM-1"
)


def name_length(what: str, name: str, limit: int) -> list[str]:
    """The problem of an object name longer than `limit` characters, if it is."""
    if len(name) <= limit:
        return []
    too_long = f"must not be more than {limit} characters long (currently {len(name)})"
    return [f"{what} name {json.dumps(name)} {too_long}"]


def field_name_errors(name: str) -> list[str]:
    """What is wrong with the name of a template, step or task (empty when it is valid)."""
    errors = []
    if len(name.encode()) > 128:
        errors.append("must be no more than 128 characters")
    if not _FIELD_NAME.fullmatch(name):
        errors.append(_FIELD_NAME_ERROR)
    return errors


def names_problem(items: list[Any], params: bool) -> str | None:
    """validateWorkflowFieldNames: every item named, validly, and only once."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        name = as_str(as_dict(item).get("name"))
        if not name:
            return f"[{i}].name is required"
        if params:
            errors = [] if _PARAM_NAME.fullmatch(name) else [_PARAM_NAME_ERROR]
        else:
            errors = field_name_errors(name)
        if errors:
            return f"[{i}].name: '{name}' is invalid: {';'.join(errors)}"
        if name in seen:
            return f"[{i}].name '{name}' is not unique"
        seen.add(name)
    return None

"""`{{...}}` tags, read as Argo's util/template (fasttemplate) reads them, and loop scopes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from workflows.validation.argo_rules._invalid import Invalid
from workflows.validation.argo_rules._yaml import as_dict, as_list, as_str

#: Only references under these roots are checked (GlobalVarValidWorkflowVariablePrefix).
CHECKED_ROOTS = ("item.", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.")
#: Known only at run time, so always accepted (the exemptions of resolveAllVariables).
RUNTIME_ROOTS = tuple(
    "outputs. workflow.creationTimestamp workflow.scheduledTime workflow.duration tasks.name "
    "steps.name node.name".split()
)
#: What a value known only at submission or run time is replaced with.
PLACEHOLDER = "__argo__internal__placeholder-"
PLACEHOLDER_FRAGMENT = re.compile(re.escape(PLACEHOLDER) + r"\d+")
_PARAM_REF = re.compile(r"{{[-a-zA-Z0-9]+(\.[-a-zA-Z0-9_]+)*}}")


def tags(text: str) -> list[str]:
    """The text between each `{{` and the next `}}`."""
    found, pos = [], 0
    while (start := text.find("{{", pos)) >= 0 and (end := text.find("}}", start + 2)) >= 0:
        found.append(text[start + 2 : end])
        pos = end + 2
    return found


def substitute(text: str, values: Mapping[str, str]) -> str:
    """template.Replace, unresolved tags allowed; expressions (`{{=...}}`) are kept as written."""
    out, pos = [], 0
    while (start := text.find("{{", pos)) >= 0 and (end := text.find("}}", start + 2)) >= 0:
        tag = text[start + 2 : end]
        nested = tag.rfind("{{")
        out.append(text[pos:start])
        if not tag.startswith("=") and tag.strip() in values:
            out.append(_escape(values[tag.strip()]))
        elif not tag.startswith("=") and nested > 0 and tag[nested + 2 :] in values:
            out.append("{{" + tag[:nested] + _escape(values[tag[nested + 2 :]]))
        else:
            out.append("{{" + tag + "}}")
        pos = end + 2
    return "".join(out) + text[pos:]


def _escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def is_parameter(text: str) -> bool:
    """Whether the text holds a `{{...}}` reference, so its value is known only later."""
    return _PARAM_REF.search(text) is not None


def add_items(node: dict[str, Any], scope: dict[str, Any]) -> None:
    """addItemsToScope: what `{{item...}}` may name inside a loop."""
    items, param = as_list(node.get("withItems")), as_str(node.get("withParam"))
    sequence = node.get("withSequence")
    if bool(items) + bool(param) + (sequence is not None) > 1:
        raise Invalid("only one of withItems, withParam, withSequence can be specified")
    if items:
        for item in items:
            if isinstance(item, dict):
                scope.update({f"item.{key}": True for key in item})
            elif isinstance(item, list) or item is None:
                scope.update({f"item.[{i}]": True for i in range(len(item or []))})
            else:
                scope["item"] = True
    elif param:
        scope["item"] = scope["item.*"] = True
    elif sequence is not None:
        if as_dict(sequence).get("count") is not None and as_dict(sequence).get("end") is not None:
            raise Invalid("only one of count or end can be defined in withSequence")
        scope["item"] = True


def aggregates(node: dict[str, Any]) -> bool:
    """Whether a step or task loops over items or a parameter, so its outputs are aggregated."""
    return bool(as_list(node.get("withItems"))) or bool(as_str(node.get("withParam")))

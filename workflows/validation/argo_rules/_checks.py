"""Checks of one spec fragment that need no traversal state: arguments, hooks, leaf-only fields."""

from __future__ import annotations

from typing import Any

from workflows.validation.argo_rules._invalid import Invalid
from workflows.validation.argo_rules._names import names_problem
from workflows.validation.argo_rules._yaml import as_dict, as_dicts, as_list, as_str


def check_arguments(prefix: str, arguments: dict[str, Any], allow_empty: bool) -> None:
    """validateArguments: names, then values (artifact locations are not checked)."""
    for kind in ("parameters", "artifacts"):
        problem = names_problem(as_list(arguments.get(kind)), params=True)
        if problem:
            raise Invalid(f"{prefix}{kind}{problem}")
    for param in as_dicts(arguments.get("parameters")):
        at = f"{prefix}{as_str(param.get('name'))}"
        value, value_from = param.get("value"), param.get("valueFrom")
        if value_from is None and value is None and not allow_empty:
            raise Invalid(f"{at}.value or {at}.valueFrom is required")
        source = as_dict(value_from)
        allowed = source.get("configMapKeyRef") is not None or source.get("supplied") is not None
        disallowed = any(
            as_str(source.get(k)) for k in ("path", "jsonPath", "parameter", "expression")
        )
        if value_from is not None and (disallowed or not (allowed or as_str(source.get("event")))):
            raise Invalid(f"{at}.valueFrom only allows: default, configMapKeyRef and supplied")
        enum = param.get("enum")
        if enum is not None:
            if not as_list(enum):
                raise Invalid(f"{at}.enum should contain at least one value")
            if value is None and allow_empty:
                return  # as Argo does: the rest of the arguments go unchecked
            if value is None:
                raise Invalid(f"{at}.value is required")
            if as_str(value) not in [as_str(e) for e in as_list(enum)]:
                raise Invalid(f"{at}.value should be present in {at}.enum list")
    for art in as_dicts(arguments.get("artifacts")):
        if as_str(art.get("from")) and as_str(art.get("fromExpression")):
            both = "shouldn't have both `from` and `fromExpression` in Artifact"
            raise Invalid(f"{prefix}{as_str(art.get('name'))} {both}")


def check_non_leaf(tmpl: dict[str, Any]) -> None:
    """A steps or DAG template may not set what only a leaf template may."""
    if tmpl.get("activeDeadlineSeconds") is not None:
        name = as_str(tmpl.get("name"))
        raise Invalid(f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates")


def check_hooks(hooks: Any, base: str) -> None:
    """Every lifecycle hook but `exit` needs an expression."""
    for event, hook in as_dict(hooks).items():
        if event != "exit" and not as_str(as_dict(hook).get("expression")):
            raise Invalid(f"{base}.{event} Expression required")

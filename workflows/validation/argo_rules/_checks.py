"""Checks of one spec fragment that need no traversal state: arguments, hooks, leaf fields."""

from __future__ import annotations

import re
from typing import Any

import yaml

from workflows.validation.argo_rules._invalid import Invalid
from workflows.validation.argo_rules._names import names_problem
from workflows.validation.argo_rules._substitution import PLACEHOLDER
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


#: An expression in a resource manifest (`resourceManifestExpressionPattern`).
_MANIFEST_EXPRESSION = re.compile(r"{{\s*=\s*(.+?)\s*}}")

_RESOURCE_ACTIONS = ("get", "create", "apply", "delete", "replace", "patch")


def check_resource(tmpl: dict[str, Any]) -> None:
    """Resource checks of `validateLeaf`: the action, and a manifest that is YAML.

    Expressions (`{{=...}}`) may stand unquoted where the value is not a string (an integer
    replica count); Argo replaces them with placeholders before it parses the manifest, and
    so does this. Any other unquoted `{{...}}` must parse as YAML as it stands.
    """
    resource = tmpl.get("resource")
    if resource is None:
        return
    resource, name = as_dict(resource), as_str(tmpl.get("name"))
    action = as_str(resource.get("action"))
    if not action.startswith(PLACEHOLDER) and action not in _RESOURCE_ACTIONS:
        raise Invalid(
            f"templates.{name}.resource.action must be one of: get, create, apply, delete, "
            "replace, patch"
        )
    if action in {"delete", "get"}:
        return
    manifest, manifest_from = as_str(resource.get("manifest")), resource.get("manifestFrom")
    if not manifest and manifest_from is None:
        raise Invalid(
            f"either templates.{name}.resource.manifest or templates.{name}.resource."
            "manifestFrom must be specified"
        )
    if manifest and manifest_from is not None:
        raise Invalid(
            "shouldn't have both `manifest` and `manifestFrom` specified in `Manifest` for "
            "resource template"
        )
    artifact = as_dict(as_dict(manifest_from).get("artifact"))
    if artifact:
        wanted = as_str(artifact.get("name"))
        inputs = as_dicts(as_dict(tmpl.get("inputs")).get("artifacts"))
        if not any(as_str(a.get("name")) == wanted for a in inputs):
            raise Invalid(f"artifact {wanted} in `manifestFrom` refer to a non-exist artifact")
    if manifest and not manifest.startswith(PLACEHOLDER):
        replaced = _MANIFEST_EXPRESSION.sub(PLACEHOLDER + "0", manifest)
        try:
            yaml.safe_load(replaced)
        except yaml.YAMLError:
            raise Invalid(f"templates.{name}.resource.manifest must be a valid yaml") from None

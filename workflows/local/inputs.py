"""A template's inputs bound to a call's arguments, as Argo's `ProcessArgs` binds them.

An argument supplies an input; without one the input's `value` or `default` applies, and an
input with neither is an error naming it. Defaults are substituted as `SubstituteParams`
does (workflow/common/util.go): first against the caller's scope (the workflow's globals,
`{{workflow.parameters.*}}` included, are the calling Workflow's, also for a template a
`templateRef` reached), then against each other's values. An argument that only refers to a
skipped node's absent output counts as not supplied. Input artifacts come from the
arguments; a git artifact has a location of its own.
"""

from __future__ import annotations

import json
from typing import Any

from workflows.exceptions import RunError
from workflows.local.expressions import substitute
from workflows.local.scope import ABSENT, Scope

Inputs = dict[str, dict[str, str]]


def bind_inputs(
    template: dict[str, Any], arguments: Inputs, scope: Scope, node_name: str
) -> Inputs:
    """Input values from the arguments, else the template's value or default.

    Args:
        template: The template called.
        arguments: The call's argument values (`parameters` and `artifacts` by name).
        scope: The variables the caller sees.
        node_name: The node's name, for messages.

    Raises:
        RunError: an input is not supplied, or its value is not one of its `enum`.
    """
    params, artifacts = {}, {}
    given = arguments.get("parameters", {})
    where = f"{node_name}: template {template['name']}"
    declared = (template.get("inputs") or {}).get("parameters") or []
    # As Argo's SubstituteParams: defaults first see the globals, then each other's values.
    own: dict[str, str] = {}
    for p in declared:
        supplied = given.get(p["name"])
        if supplied == ABSENT:
            if "value" not in p and "default" not in p:
                raise RunError(
                    f"inputs.parameters.{p['name']}: argument references an absent optional "
                    "(skipped/omitted node output with no default)"
                )
            supplied = None
        if supplied is not None:
            params[p["name"]] = supplied
        elif "value" in p or "default" in p:
            raw = str(p["value"] if "value" in p else p["default"])
            own[p["name"]] = substitute(raw, scope, where, lenient=True)
            params[p["name"]] = own[p["name"]]
        else:
            raise RunError(f"{where}: inputs.parameters.{p['name']} was not supplied")
    inputs_scope = {**scope, **{f"inputs.parameters.{k}": v for k, v in params.items()}}
    # Both passes leave what they cannot resolve as it is (`SubstituteParams` replaces with
    # allowUnresolved): an exit handler's default naming a global output no step set stays
    # `{{workflow.outputs.parameters.x}}` for the step to see.
    for name, raw in own.items():
        params[name] = substitute(raw, inputs_scope, f"{where} input {name}", lenient=True)
    for p in declared:
        value = params[p["name"]]
        if p.get("enum") and value not in [str(e) for e in p["enum"]]:
            raise RunError(f"{where}: input {p['name']} = {value!r} is not one of {p['enum']}")
    for a in (template.get("inputs") or {}).get("artifacts") or []:
        source = arguments.get("artifacts", {}).get(a["name"])
        # A git artifact has a location of its own; an argument replaces it (ProcessArgs).
        if not source and not a.get("optional") and not a.get("git"):
            raise RunError(f"{where}: inputs.artifacts.{a['name']} was not supplied")
        if source:
            artifacts[a["name"]] = source
    return {"parameters": params, "artifacts": artifacts}


def input_scope(inputs: Inputs) -> Scope:
    """The `inputs.parameters.*` variables a template's body sees."""
    scope = {f"inputs.parameters.{k}": v for k, v in inputs["parameters"].items()}
    scope["inputs.parameters"] = json.dumps(
        [{"name": k, "value": v} for k, v in inputs["parameters"].items()]
    )
    return scope

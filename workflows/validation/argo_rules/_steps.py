"""validateSteps: each step of a steps template, its name, loop, references and call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflows.validation.argo_rules._checks import check_arguments, check_hooks, check_non_leaf
from workflows.validation.argo_rules._invalid import Invalid, within
from workflows.validation.argo_rules._names import field_name_errors
from workflows.validation.argo_rules._substitution import (
    PLACEHOLDER_FRAGMENT,
    add_items,
    aggregates,
)
from workflows.validation.argo_rules._yaml import as_dict, as_dicts, as_list, as_str, to_json

if TYPE_CHECKING:
    from workflows.validation.argo_rules._validator import Validator


def check_steps(v: Validator, scope: dict[str, Any], tmpl: dict[str, Any]) -> None:
    """validateSteps, going on past a failing step."""
    check_non_leaf(tmpl)
    seen: set[str] = set()
    for i, group in enumerate(as_list(tmpl.get("steps"))):
        for step in as_dicts(group):
            if not v.attempt(None, _step, v, scope, tmpl, i, step, seen):
                scope[f"steps.{as_str(step.get('name'))}.*"] = True


def _step(
    v: Validator,
    scope: dict[str, Any],
    tmpl: dict[str, Any],
    i: int,
    step: dict[str, Any],
    seen: set[str],
) -> None:
    """One step: its name, loop, arguments, references, and the template it calls."""
    owner, name = as_str(tmpl.get("name")), as_str(step.get("name"))
    at = f"templates.{owner}.steps[{i}]"
    if not name:
        raise Invalid(f"{at}.name is required")
    if name in seen:
        raise Invalid(f"{at}.name '{name}' is not unique")
    errors = field_name_errors(PLACEHOLDER_FRAGMENT.sub("x", name))
    if errors:
        raise Invalid(f"{at}.name '{name}' is invalid: {';'.join(errors)}")
    seen.add(name)
    scope[f"steps.{name}.status"] = True
    where = f"{at}.{name}"
    try:
        add_items(step, scope)
    except Invalid as exc:
        raise within(where, exc) from None
    arguments = as_dict(step.get("arguments"))
    check_arguments(f"{where}.arguments.", arguments, allow_empty=False)
    resolved = v.call(where, step, None)
    if "exit" in as_dict(step.get("hooks")) or as_str(step.get("onExit")):
        v.add_outputs(scope, "steps", step, resolved, aggregate=False)
    check_hooks(step.get("hooks"), where)
    try:
        v.resolve({**scope, **v.inline_inputs(step)}, to_json(step))
    except Invalid as exc:
        raise within(f"templates.{owner}.steps", exc) from None
    v.add_outputs(scope, "steps", step, resolved, aggregates(step))
    v.call(where, step, arguments)

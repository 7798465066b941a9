"""validateDAG: the structure of a DAG template, then each task in two passes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workflows.validation.argo_rules._checks import check_arguments, check_non_leaf
from workflows.validation.argo_rules._dependencies import (
    TASK_RESULT,
    TASK_RESULTS,
    ancestry,
    dependencies,
    sort_tasks,
)
from workflows.validation.argo_rules._invalid import Invalid, within
from workflows.validation.argo_rules._names import names_problem
from workflows.validation.argo_rules._substitution import add_items, aggregates, is_parameter
from workflows.validation.argo_rules._yaml import as_dict, as_dicts, as_list, as_str, to_json

if TYPE_CHECKING:
    from workflows.validation.argo_rules._validator import Validator


@dataclass
class _Graph:
    """What validateDAG knows of one DAG template while it walks the tasks."""

    owner: str
    scope: dict[str, Any]
    by_name: dict[str, dict[str, Any]]
    using_depends: bool
    resolved: dict[str, Any] = field(default_factory=dict)


def check_dag(v: Validator, scope: dict[str, Any], tmpl: dict[str, Any]) -> None:
    """validateDAG: its structure (a problem there ends the check), then each task."""
    owner = as_str(tmpl.get("name"))
    check_non_leaf(tmpl)
    dag = as_dict(tmpl.get("dag"))
    tasks = as_dicts(dag.get("tasks"))
    if not tasks:
        raise Invalid(f"templates.{owner} must have at least one task")
    by_name = {as_str(t.get("name")): t for t in tasks}
    try:
        ordered = sort_tasks(tasks, by_name)
    except Invalid as exc:
        raise within(f"templates.{owner} sorting failed:", exc) from None
    problem = names_problem(tasks, params=False)
    if problem:
        raise Invalid(f"templates.{owner}.tasks{problem}")
    using_depends = any(as_str(t.get("depends")) for t in tasks)
    graph = _Graph(owner, scope, by_name, using_depends)
    for task in ordered:
        if not v.attempt(None, _task, v, graph, task):
            scope[f"tasks.{as_str(task.get('name'))}.*"] = True
    target = as_str(dag.get("target"))
    try:
        v.resolve(scope, target)
    except Invalid as exc:
        raise within(f"templates.{owner}.targets", exc) from None
    for name in target.split(" ") if target else []:
        if not is_parameter(name) and name not in by_name:
            raise Invalid(f"templates.{owner}.targets: target '{name}' is not defined")
    for task in ordered:
        if as_str(task.get("name")) in graph.resolved:
            v.attempt(None, _task_body, v, graph, task)


def _task(v: Validator, graph: _Graph, task: dict[str, Any]) -> None:
    """The first pass over a task: the rules of its dependencies, and what it calls."""
    name, owner = as_str(task.get("name")), graph.owner
    where = f"templates.{owner}.tasks.{name}"
    has_dependencies = bool(as_list(task.get("dependencies")))
    if (graph.using_depends or has_dependencies) and name[:1] in set("0123456789"):
        raise Invalid(
            f"{where} name cannot begin with a digit when using either 'depends' or 'dependencies'"
        )
    if graph.using_depends and has_dependencies:
        raise Invalid(
            f"templates.{owner} cannot use both 'depends' and 'dependencies' in the same DAG "
            "template"
        )
    if graph.using_depends and task.get("continueOn") is not None:
        raise Invalid(
            f"templates.{owner} cannot use 'continueOn' when using 'depends'. Instead use "
            "'dep-task.Failed'/'dep-task.Errored'"
        )
    resolved = graph.resolved[name] = v.call(where, task, None)
    v.add_outputs(graph.scope, "tasks", task, resolved, aggregates(task))
    for match in re.findall(TASK_RESULT, as_str(task.get("depends"))):
        dep, result = match.split(".")[:2]
        if result not in TASK_RESULTS:
            raise Invalid(f"{where} task result '{result}' for task '{dep}' is invalid")
    for dep, kind in dependencies(graph.by_name[name], graph.by_name).items():
        dep_task = graph.by_name[dep]  # sort_tasks has rejected unknown names
        looped = aggregates(dep_task) or dep_task.get("withSequence") is not None
        if kind == "items" and not looped:
            # Argo names the dependency twice here (its loop variable shadows the task).
            raise Invalid(
                f"templates.{owner}.tasks.{dep} dependency '{dep}' uses an items-based "
                "condition such as .AnySucceeded or .AllFailed but does not contain any items"
            )


def _task_body(v: Validator, graph: _Graph, task: dict[str, Any]) -> None:
    """The second pass over a task: its references, its arguments, and the call."""
    name = as_str(task.get("name"))
    where = f"templates.{graph.owner}.tasks.{name}"
    if task.get("hooks") is not None:
        graph.scope[f"tasks.{name}.status"] = True
    v.add_outputs(graph.scope, "tasks", task, graph.resolved.get(name), aggregate=False)
    task_scope = dict(graph.scope)
    ancestors = ancestry(name, graph.by_name)
    for ancestor in map(graph.by_name.__getitem__, ancestors):
        resolved = graph.resolved.get(as_str(ancestor.get("name")))
        v.add_outputs(task_scope, "tasks", ancestor, resolved, aggregates(ancestor), True)
    task_scope.update(v.inline_inputs(task))
    try:
        add_items(task, task_scope)
        v.resolve(task_scope, to_json(task))
    except Invalid as exc:
        raise within(where, exc) from None
    arguments = as_dict(task.get("arguments"))
    check_arguments(f"{where}.arguments.", arguments, allow_empty=False)
    for kind, key in (("parameters", "value"), ("artifacts", "from")):
        for arg in as_dicts(arguments.get(kind)):
            text = as_str(arg.get(key))
            ref = text.split(".")[1] if text.startswith("{{tasks.") else None
            if ref is not None and ref not in ancestors:
                what = f"{kind[:-1]} '{as_str(arg.get('name'))}'"
                raise Invalid(f"{where} missing dependency '{ref}' for {what}")
    v.call(where, task, arguments)

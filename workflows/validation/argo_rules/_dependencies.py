"""DAG dependencies as Argo's workflow/common reads them: parsing, sorting and ancestry."""

from __future__ import annotations

import re
from typing import Any

from workflows.validation.argo_rules._invalid import Invalid
from workflows.validation.argo_rules._yaml import as_dict, as_list, as_str

#: `task.Result` in a `depends` expression.
TASK_RESULT = r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)"
#: The results a `depends` expression may name.
TASK_RESULTS = set(
    "Succeeded Failed Skipped Omitted Errored Daemoned AnySucceeded AllFailed".split()
)
_DEPENDS_NAME = re.compile(TASK_RESULT + r"|([a-zA-Z0-9][-a-zA-Z0-9]*)")


def dependencies(task: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> dict[str, str]:
    """GetTaskDependencies: the tasks `depends` (or `dependencies`) names, "task" or "items"."""
    depends = as_str(task.get("depends"))
    if not depends:
        names = [as_str(d) for d in as_list(task.get("dependencies"))]
        depends = " && ".join(_expand(name, as_dict(by_name.get(name))) for name in names)
    found: dict[str, str] = {}
    for match in _DEPENDS_NAME.finditer(depends):
        if match.group(1):
            dep, result = match.group(1).split(".")[:2]
            if result in ("AnySucceeded", "AllFailed"):
                found[dep] = "items"
            else:
                found.setdefault(dep, "task")
        else:
            found[match.group(2)] = "task"
    return found


def _expand(name: str, task: dict[str, Any]) -> str:
    """expandDependency: what `dependencies: [name]` means as a `depends` expression."""
    continue_on = as_dict(task.get("continueOn"))
    results = ["Succeeded", "Skipped", "Daemoned"]
    results += ["Errored"] if continue_on.get("error") else []
    results += ["Failed"] if continue_on.get("failed") else []
    return "(" + " || ".join(f"{name}.{result}" for result in results) + ")"


def sort_tasks(tasks: list[dict[str, Any]], by_name: dict[str, dict[str, Any]]) -> list[Any]:
    """sorting.TopologicalSorting, roots in the order written (Argo's order is random)."""
    names = [as_str(t.get("name")) for t in tasks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise Invalid(f"duplicated nodeName {name}")
    deps = {name: list(dependencies(t, by_name)) for name, t in zip(names, tasks, strict=True)}
    successors: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in deps[name]:
            if dep not in successors:
                raise Invalid(f"invalid dependency {dep}")
            successors[dep].append(name)
    waiting = {name: len(deps[name]) for name in names}
    order = [name for name in names if not waiting[name]]
    for name in order:
        for successor in successors[name]:
            waiting[successor] -= 1
            if not waiting[successor]:
                order.append(successor)
    if len(order) < len(names):
        raise Invalid("graph with cycle")
    return [by_name[name] for name in order]


def ancestry(name: str, by_name: dict[str, dict[str, Any]]) -> list[str]:
    """GetTaskAncestry: every task this one depends on, directly or not."""
    found: list[str] = []
    stack = list(dependencies(by_name[name], by_name))
    while stack:
        dep = stack.pop()
        if dep not in found and dep != name:
            found.append(dep)
            stack.extend(dependencies(by_name[dep], by_name))
    return found

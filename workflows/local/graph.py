"""DAG and steps templates: scheduling children, loops, `when`, `depends`, and the outcome.

A DAG starts each task once every task its `depends` (or `dependencies`) names has finished;
a false `depends` makes the task Omitted, a false `when` makes it Skipped. The DAG fails when
a task failed and no `depends` handles that failure (`x.Failed`, `x.Errored`, ...). Steps run
group by group, the steps of a group in parallel; a failed group fails the template. Loops
(`withItems`, `withParam`) become a group node with one child per item, and their outputs
are JSON lists, as in Argo.
"""

from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.expressions import (
    depends_references,
    evaluate_depends,
    evaluate_when,
    substitute,
)
from workflows.local.store import Node

if TYPE_CHECKING:
    from workflows.local.engine import Run, Scope

#: `depends` results that mean a task's failure is expected and handled.
_HANDLES_FAILURE = {"Failed", "Errored", "AllFailed", "AnySucceeded"}


def run_dag(run: Run, node: Node, template: dict[str, Any], scope: Scope) -> Scope:
    """Run a DAG template's tasks; sets the node's phase; returns the tasks' output scope."""
    tasks = {t["name"]: t for t in template["dag"]["tasks"]}
    expressions = {name: _depends(task) for name, task in tasks.items()}
    references = {
        name: depends_references(expr) if expr else {} for name, expr in expressions.items()
    }
    for name, refs in references.items():
        for ref in refs:
            if ref not in tasks:
                raise RunError(
                    f"task {name!r} depends on {ref!r}, which is not a task of {template['name']!r}"
                )
    finished: dict[str, Node] = {}
    outputs: Scope = {}
    pending = set(tasks)
    with ThreadPoolExecutor(max_workers=max(len(tasks), 1)) as pool:
        running: dict[Future[Node], str] = {}
        while pending or running:
            for name in sorted(pending):
                if not all(ref in finished for ref in references[name]):
                    continue
                pending.discard(name)
                task_name = f"{node.name}.{name}"
                expression = expressions[name]
                phases = {t: n.phase for t, n in finished.items()}
                kids = {t: [run.nodes[c].phase for c in n.children] for t, n in finished.items()}
                if run.stopping.is_set() or (
                    expression and not evaluate_depends(expression, phases, kids)
                ):
                    omitted = run.new_node(
                        task_name, name, "Skipped", node, tasks[name].get("template", ""), node.id
                    )
                    run.set_phase(omitted, "Omitted", "omitted: depends condition not met")
                    finished[name] = omitted
                    continue
                task_scope = {**scope, **outputs}
                running[
                    pool.submit(run_task, run, node, tasks[name], task_name, name, task_scope)
                ] = name
            if not running:
                if pending:
                    raise RunError(
                        f"tasks {sorted(pending)} of {template['name']!r} depend on "
                        "each other in a cycle"
                    )
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                finished[name] = future.result()
                outputs.update(_task_scope("tasks", name, finished[name], run))
    handled = {
        ref
        for refs in references.values()
        for ref, results in refs.items()
        if results & _HANDLES_FAILURE
    }
    failed = [n for t, n in finished.items() if n.phase in {"Failed", "Error"} and t not in handled]
    if failed:
        node.phase = "Failed"
        node.message = f"child '{failed[0].id}' failed"
    else:
        node.phase = "Succeeded"
    return {**scope, **outputs}


def _depends(task: dict[str, Any]) -> str:
    if task.get("depends"):
        return str(task["depends"])
    return " && ".join(task.get("dependencies") or [])


def run_steps(run: Run, node: Node, template: dict[str, Any], scope: Scope) -> Scope:
    """Run a steps template group by group; sets the node's phase; returns the steps' scope."""
    outputs: Scope = {}
    for index, group in enumerate(template["steps"]):
        group_name = f"{node.name}[{index}]"
        group_node = run.new_node(group_name, f"[{index}]", "StepGroup", node, boundary=node.id)
        run.set_phase(group_node, "Running")
        step_scope = {**scope, **outputs}
        with ThreadPoolExecutor(max_workers=max(len(group), 1)) as pool:
            futures = {
                step["name"]: pool.submit(
                    run_task,
                    run,
                    group_node,
                    step,
                    f"{group_name}.{step['name']}",
                    step["name"],
                    step_scope,
                )
                for step in group
            }
            results = {name: future.result() for name, future in futures.items()}
        for name, child in results.items():
            outputs.update(_task_scope("steps", name, child, run))
        failed = [c for c in results.values() if c.phase in {"Failed", "Error"}]
        if failed:
            run.set_phase(group_node, "Failed", f"child '{failed[0].id}' failed")
            node.phase, node.message = "Failed", f"child '{failed[0].id}' failed"
            return {**scope, **outputs}
        run.set_phase(group_node, "Succeeded")
    node.phase = "Succeeded"
    return {**scope, **outputs}


def run_task(
    run: Run, parent: Node, task: dict[str, Any], node_name: str, display: str, scope: Scope
) -> Node:
    """Run one DAG task or step: `when`, then a loop or a single template call.

    A task whose `when`, loop or arguments cannot be resolved becomes an Error node naming
    the reference, as in Argo, instead of stopping the whole run.
    """
    try:
        return _run_task(run, parent, task, node_name, display, scope)
    except RunError as exc:
        if node_name in {n.name for n in run.nodes.values()}:
            raise
        node = run.new_node(node_name, display, "Pod", parent, task.get("template", ""), parent.id)
        run.set_phase(node, "Error", str(exc))
        return node


def _run_task(
    run: Run, parent: Node, task: dict[str, Any], node_name: str, display: str, scope: Scope
) -> Node:
    where = node_name
    if task.get("when"):
        condition = substitute(str(task["when"]), scope, f"{where}.when")
        if not evaluate_when(condition):
            skipped = run.new_node(
                node_name, display, "Skipped", parent, task.get("template", ""), parent.id
            )
            run.set_phase(skipped, "Skipped", f"when '{condition}' evaluated false")
            return skipped
    items = _items(task, scope, where)
    if items is None:
        arguments = _arguments(task, scope, where)
        return run.execute_template(
            task["template"], node_name, display, parent, arguments, scope, parent.id
        )
    group = run.new_node(
        node_name, display, "TaskGroup", parent, task.get("template", ""), parent.id
    )
    run.set_phase(group, "Running")
    with ThreadPoolExecutor(max_workers=max(len(items), 1)) as pool:
        futures = []
        for i, item in enumerate(items):
            item_scope = {**scope, **_item_scope(item)}
            label = f"{display}({i}:{_label(item)})"
            arguments = _arguments(task, item_scope, f"{where}({i})")
            futures.append(
                pool.submit(
                    run.execute_template,
                    task["template"],
                    f"{node_name}({i}:{_label(item)})",
                    label,
                    group,
                    arguments,
                    item_scope,
                    parent.id,
                )
            )
        children = [f.result() for f in futures]
    group.outputs = _aggregate(children)
    bad = [c for c in children if c.phase in {"Failed", "Error"}]
    run.set_phase(
        group, "Failed" if bad else "Succeeded", f"child '{bad[0].id}' failed" if bad else ""
    )
    return group


def _items(task: dict[str, Any], scope: Scope, where: str) -> list[Any] | None:
    if "withItems" in task:
        return list(task["withItems"])
    if "withParam" in task:
        text = substitute(str(task["withParam"]), scope, f"{where}.withParam")
        try:
            items = json.loads(text)
        except ValueError:
            raise RunError(f"{where}.withParam: {text[:200]!r} is not a JSON list") from None
        if not isinstance(items, list):
            raise RunError(f"{where}.withParam: {text[:200]!r} is not a JSON list")
        return items
    return None


def _item_scope(item: Any) -> Scope:
    if isinstance(item, dict):
        scope = {f"item.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in item.items()}
        scope["item"] = json.dumps(item)
        return scope
    return {"item": item if isinstance(item, str) else json.dumps(item)}


def _label(item: Any) -> str:
    if isinstance(item, dict):
        return ",".join(f"{k}:{v}" for k, v in sorted(item.items()))
    return item if isinstance(item, str) else json.dumps(item)


def _arguments(task: dict[str, Any], scope: Scope, where: str) -> dict[str, dict[str, str]]:
    arguments = task.get("arguments") or {}
    params = {
        p["name"]: substitute(str(p.get("value", "")), scope, f"{where}.arguments.{p['name']}")
        for p in arguments.get("parameters") or []
    }
    artifacts = {
        a["name"]: substitute(str(a.get("from", "")), scope, f"{where}.arguments.{a['name']}")
        for a in arguments.get("artifacts") or []
    }
    return {"parameters": params, "artifacts": artifacts}


def _task_scope(prefix: str, name: str, node: Node, run: Run) -> Scope:
    """What later tasks may reference of a finished task."""
    scope = {f"{prefix}.{name}.status": node.phase, f"{prefix}.{name}.id": node.id}
    if node.phase == "Skipped" or node.phase == "Omitted":
        return scope
    for p in node.outputs.get("parameters") or []:
        scope[f"{prefix}.{name}.outputs.parameters.{p['name']}"] = p["value"]
    for a in node.outputs.get("artifacts") or []:
        scope[f"{prefix}.{name}.outputs.artifacts.{a['name']}"] = a["path"]
    if "result" in node.outputs:
        scope[f"{prefix}.{name}.outputs.result"] = node.outputs["result"]
    if "exitCode" in node.outputs:
        scope[f"{prefix}.{name}.exitCode"] = node.outputs["exitCode"]
    return scope


def _aggregate(children: list[Node]) -> dict[str, Any]:
    """Loop outputs: each parameter (and the result) as a JSON list over the items."""
    names: list[str] = []
    for child in children:
        for p in child.outputs.get("parameters") or []:
            if p["name"] not in names:
                names.append(p["name"])
    outputs: dict[str, Any] = {}
    if names:
        outputs["parameters"] = [
            {
                "name": n,
                "value": json.dumps(
                    [
                        next(
                            (
                                p["value"]
                                for p in c.outputs.get("parameters") or []
                                if p["name"] == n
                            ),
                            None,
                        )
                        for c in children
                    ]
                ),
            }
            for n in names
        ]
    results = [c.outputs.get("result") for c in children]
    if any(r is not None for r in results):
        outputs["result"] = json.dumps(results)
    return outputs

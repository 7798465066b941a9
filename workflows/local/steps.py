"""Steps templates, run group by group as Argo's controller does (workflow/controller/steps.go).

Each group is a StepGroup node `name[i]`; its steps run in parallel, and a loop's items are
children of the group itself (`name[i].step(0:item)`), with no node of their own. A step that
cannot be resolved (an unresolvable reference, a bad `withParam`) errors the whole group. A
group fails when a child failed or errored without a `continueOn` for that phase, with
"child '<id>' failed", and the steps node fails with the group's message. The first group
hangs below the steps node, each later group below the outbound nodes of the one before.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.dag import continues_on
from workflows.local.refs import Frame, target
from workflows.local.scope import Scope
from workflows.local.store import FAILED, Node
from workflows.local.tasks import (
    MAX_THREADS,
    arguments,
    expand,
    finished_scope,
    resolve_when,
    should_execute,
)

if TYPE_CHECKING:
    from workflows.local.engine import Run


@dataclass
class _Planned:
    """A step of a group, resolved: what to call, or the node it already ended as."""

    step: dict[str, Any]
    calls: list[tuple[str, str, Scope, dict[str, dict[str, str]]]] = field(default_factory=list)
    loop: bool = False
    done: Node | None = None


def run_steps(run: Run, node: Node, template: dict[str, Any], scope: Scope, frame: Frame) -> Scope:
    """Run a steps template group by group; sets the node's phase; returns the steps' scope.

    `frame` is where the steps template runs: its steps' `template:` names resolve there.
    """
    gate = run.gate(node, template)
    outputs: Scope = {}
    parents = [node]
    last_group: Node | None = None
    for index, group in enumerate(template["steps"]):
        group_name = f"{node.name}[{index}]"
        group_node = run.new_node(
            group_name,
            f"[{index}]",
            "StepGroup",
            parents,
            boundary=node.id,
            scope=frame.holder.scope,
        )
        last_group = group_node
        run.set_phase(group_node, "Running")
        step_scope = {**scope, **run.global_scope(), **outputs}
        children = _run_group(run, node, group_node, group, step_scope, gate, frame)
        if group_node.phase not in FAILED:
            failed = [
                (c, step)
                for step, kids in children
                for c in kids
                if c.phase in FAILED and not continues_on(step, c.phase)
            ]
            if gate.tripped():
                message = "template has failed or errored children and failFast enabled"
                run.set_phase(group_node, "Failed", message)
            elif failed:
                run.set_phase(group_node, "Failed", f"child '{failed[0][0].id}' failed")
            elif run.stopping.is_set():
                run.set_phase(group_node, "Failed", run.stop_reason)
            else:
                run.set_phase(group_node, "Succeeded")
        if group_node.phase in FAILED:
            node.outbound_nodes = _outbound(run, group_node)
            node.phase, node.message = "Failed", group_node.message
            return {**scope, **outputs}
        for step, kids in children:
            outputs.update(_step_scope(run, step, group_node, kids))
        parents = [run.nodes[i] for i in _outbound(run, group_node)] or [group_node]
    if last_group is not None:
        node.outbound_nodes = _outbound(run, last_group)
    node.phase = "Succeeded"
    return {**scope, **outputs}


def _outbound(run: Run, group: Node) -> list[str]:
    return [o.id for child in group.children for o in run.outbound(run.nodes[child])]


def _run_group(
    run: Run,
    steps_node: Node,
    group_node: Node,
    group: list[dict[str, Any]],
    scope: Scope,
    gate: Any,
    frame: Frame,
) -> list[tuple[dict[str, Any], list[Node]]]:
    """Resolve every step of a group, then run the calls in parallel."""
    planned = []
    for step in group:
        try:
            planned.append(_plan(run, steps_node, group_node, step, scope, frame))
        except RunError as exc:
            run.set_phase(group_node, "Error", str(exc))
            return []
    calls = sum(len(p.calls) for p in planned)
    with ThreadPoolExecutor(max_workers=max(min(calls, MAX_THREADS), 1)) as pool:
        futures: list[tuple[_Planned, list[Future[Node | None]]]] = []
        for plan in planned:
            futures.append(
                (
                    plan,
                    [
                        pool.submit(
                            run.execute_template,
                            plan.step,
                            frame,
                            name,
                            display,
                            [group_node],
                            args,
                            call_scope,
                            steps_node.id,
                        )
                        for name, display, call_scope, args in plan.calls
                    ],
                )
            )
        results = []
        for plan, plan_futures in futures:
            kids = [n for n in (f.result() for f in plan_futures) if n is not None]
            if plan.done is not None:
                kids.insert(0, plan.done)
            results.append((plan.step, kids))
    return results


def _plan(
    run: Run, steps_node: Node, group_node: Node, step: dict[str, Any], scope: Scope, frame: Frame
) -> _Planned:
    """Resolve one step: its `when`, its loop, its arguments; skipped steps become nodes here."""
    name = f"{group_node.name}.{step['name']}"
    plan = _Planned(step)
    step_scope = {**scope, "steps.name": step["name"]}
    proceed, when = resolve_when(step, step_scope, name)
    if proceed is False:
        message = f"when '{when}' evaluated false"
        plan.done = _skipped(run, frame, steps_node, group_node, step, name, step["name"], message)
        return plan
    calls = expand(step, step_scope, name, step["name"], name)
    if calls is None:
        plan.calls.append((name, step["name"], step_scope, arguments(step, step_scope, name)))
        return plan
    plan.loop = True
    if not calls:
        plan.done = _skipped(
            run, frame, steps_node, group_node, step, name, step["name"], "Skipped, empty params"
        )
    for call in calls:
        if not should_execute(call.when, call.name):
            message = f"when '{call.when}' evaluated false"
            _skipped(run, frame, steps_node, group_node, step, call.name, call.display, message)
            continue
        plan.calls.append((call.name, call.display, call.scope, arguments(step, call.scope, name)))
    return plan


def _skipped(
    run: Run,
    frame: Frame,
    steps_node: Node,
    group_node: Node,
    step: dict[str, Any],
    name: str,
    display: str,
    message: str,
) -> Node:
    template, ref = target(step)
    node = run.new_node(
        name,
        display,
        "Skipped",
        [group_node],
        template,
        steps_node.id,
        ref=ref,
        scope=frame.holder.scope,
    )
    run.set_phase(node, "Skipped", message)
    return node


def _step_scope(run: Run, step: dict[str, Any], group: Node, kids: list[Node]) -> Scope:
    """What later groups may reference of a step; a loop's outputs are aggregated."""
    name = step["name"]
    exact = f"{group.name}.{name}"
    single = [k for k in kids if k.name == exact]
    if single:
        return finished_scope(run, "steps", name, single[0])
    items = [k for k in kids if k.name.startswith(exact + "(") and k.type != "Skipped"]
    return finished_scope(run, "steps", name, group, items)

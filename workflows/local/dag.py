"""DAG templates, scheduled and judged as Argo's controller does (workflow/controller/dag.go).

Only the target tasks (`dag.target`, else the tasks nothing depends on) and their ancestors
run. A task starts once every task its `depends` names has finished; `dependencies: [a]` and a
bare `a` in `depends` mean `a.Succeeded || a.Skipped || a.Daemoned`, widened by `a`'s
`continueOn`. A false `depends` makes the task Omitted, a false `when` Skipped.

The DAG's phase comes from its targets alone (`assessDAGPhase`): a breadth-first walk from
the root tasks carries each branch's last completed phase down to the tasks below, so an
Omitted or Skipped target inherits the phase of the branch above it, Failed or Error winning
over Succeeded. A failed target fails the DAG unless its `continueOn` covers that phase; with
`dag.failFast` (the default) the first failing target decides. Argo leaves a failed DAG's
message empty; here it names the failed child and its error, so a run says why it failed.
"""

from __future__ import annotations

import re
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.expressions import evaluate_depends, substitute
from workflows.local.refs import Frame, target
from workflows.local.scope import Scope
from workflows.local.store import COMPLETED, FAILED, Node
from workflows.local.tasks import (
    MAX_THREADS,
    Call,
    arguments,
    expand,
    finished_scope,
    resolve_when,
    should_execute,
)

if TYPE_CHECKING:
    from workflows.local.engine import Run

#: Argo's pattern for `task.Result` and bare task names in `depends` (common/ancestry.go).
_TASK_NAME = re.compile(r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)|([a-zA-Z0-9][-a-zA-Z0-9]*)")


def depends_logic(task: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> str:
    """A task's `depends` with every bare name expanded, as Argo's `GetTaskDependencies` does."""
    if task.get("depends"):
        logic = str(task["depends"])
    else:
        logic = " && ".join(task.get("dependencies") or [])
    out, end = [], 0
    for match in _TASK_NAME.finditer(logic):
        if match.group(2) is None:
            continue
        name = match.group(2)
        out.append(logic[end : match.start()] + _expand_bare(name, tasks.get(name) or {}))
        end = match.end()
    return "".join(out) + logic[end:]


def _expand_bare(name: str, task: dict[str, Any]) -> str:
    results = ["Succeeded", "Skipped", "Daemoned"]
    continue_on = task.get("continueOn") or {}
    if continue_on.get("error"):
        results.append("Errored")
    if continue_on.get("failed"):
        results.append("Failed")
    return "(" + " || ".join(f"{name}.{r}" for r in results) + ")"


def dependencies(logic: str) -> set[str]:
    """The task names a (bare-name expanded) `depends` expression mentions."""
    names = set()
    for match in _TASK_NAME.finditer(logic):
        names.add((match.group(1) or match.group(2)).split(".")[0])
    return names


def continues_on(task: dict[str, Any], phase: str) -> bool:
    """Whether a task's `continueOn` lets its `phase` pass."""
    continue_on = task.get("continueOn") or {}
    return bool(
        (continue_on.get("failed") and phase == "Failed")
        or (continue_on.get("error") and phase == "Error")
    )


class _Dag:
    """The state of one DAG node while its tasks run."""

    def __init__(
        self, run: Run, node: Node, template: dict[str, Any], scope: Scope, frame: Frame
    ) -> None:
        self.run, self.node, self.scope, self.frame = run, node, scope, frame
        self.template = template
        self.tasks = {t["name"]: t for t in template["dag"]["tasks"]}
        self.logic = {name: depends_logic(t, self.tasks) for name, t in self.tasks.items()}
        self.deps = {name: dependencies(logic) for name, logic in self.logic.items()}
        for name, deps in self.deps.items():
            for dep in sorted(deps - set(self.tasks)):
                raise RunError(
                    f"task {name!r} depends on {dep!r}, which is not a task of {template['name']!r}"
                )
        target = substitute(str(template["dag"].get("target") or ""), scope, "dag.target")
        self.targets = target.split() or sorted(
            set(self.tasks) - {d for deps in self.deps.values() for d in deps}
        )
        for name in self.targets:
            if name not in self.tasks:
                raise RunError(f"dag.target names {name!r}, which is not a task")
        self.wanted = self._ancestors(self.targets) | set(self.targets)
        self.nodes: dict[str, Node] = {}
        self.items: dict[str, list[Node]] = {}
        self.finished: dict[str, Scope] = {}
        self.blocked: set[str] = set()

    def _ancestors(self, names: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(names)
        while stack:
            for dep in self.deps[stack.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen

    # --- scheduling ---------------------------------------------------------------------

    def execute(self) -> Scope:
        gate = self.run.gate(self.node, self.template)
        running: dict[Future[Node | None], str] = {}
        with ThreadPoolExecutor(max_workers=max(len(self.tasks), 1)) as pool:
            while True:
                self._start_ready(pool, running, gate.tripped)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    self._finish(name, future.result())
        unstarted = self.wanted - set(self.nodes) - self.blocked
        if unstarted and not gate.tripped() and not self.run.stopping.is_set():
            raise RunError(
                f"tasks {sorted(unstarted)} of {self.template['name']!r} can never start: "
                "their depends form a cycle"
            )
        self._conclude(gate.tripped())
        scope = {**self.scope}
        for name in self.tasks:
            scope.update(self.finished.get(name, {}))
        return scope

    def _start_ready(
        self,
        pool: ThreadPoolExecutor,
        running: dict[Future[Node | None], str],
        tripped: Any,
    ) -> None:
        """Start (or omit) every wanted task whose dependencies have all finished."""
        progressed = True
        while progressed:
            progressed = False
            for name in sorted(self.wanted - set(self.nodes) - self.blocked):
                if name in running.values() or not self.deps[name] <= set(self.finished):
                    continue
                if tripped() or self.run.stopping.is_set():
                    self.blocked.add(name)
                    continue
                progressed = True
                if not self._depends_hold(name):
                    continue
                future = pool.submit(self._run_task, name, self._task_scope(name))
                running[future] = name

    def _depends_hold(self, name: str) -> bool:
        """Evaluate `depends`; record an Omitted or Error node when the task must not run."""
        logic = self.logic[name]
        if not logic:
            return True
        phases = {t: n.phase for t, n in self.nodes.items()}
        kids = {t: [n.phase for n in self.items.get(t, [])] for t in self.nodes}
        try:
            if evaluate_depends(logic, phases, kids):
                return True
            phase, message = "Omitted", "omitted: depends condition not met"
        except RunError as exc:
            phase, message = "Error", f"unable to evaluate expression '{logic}': {exc}"
        node = self._leaf(name, "Skipped", phase, message)
        self._finish(name, node)
        return False

    def _task_scope(self, name: str) -> Scope:
        scope = {**self.scope, **self.run.global_scope()}
        for ancestor in self._ancestors([name]):
            scope.update(self.finished.get(ancestor, {}))
        scope["tasks.name"] = name
        return scope

    def _parents(self, name: str) -> list[Node]:
        """Where a task hangs in Argo's node graph: below its dependencies' outbound nodes."""
        if not self.deps[name]:
            return [self.node]
        return [
            outbound
            for dep in sorted(self.deps[name])
            for outbound in self.run.outbound(self.nodes[dep])
        ]

    def _node(
        self, task: dict[str, Any], node_name: str, display: str, kind: str, parents: list[Node]
    ) -> Node:
        """A node of a task that runs no template itself (skipped, or a loop's group)."""
        template, ref = target(task)
        return self.run.new_node(
            node_name,
            display,
            kind,
            parents,
            template,
            self.node.id,
            ref=ref,
            scope=self.frame.holder.scope,
        )

    def _leaf(self, name: str, kind: str, phase: str, message: str) -> Node:
        node = self._node(
            self.tasks[name], f"{self.node.name}.{name}", name, kind, self._parents(name)
        )
        self.run.set_phase(node, phase, message)
        return node

    def _finish(self, name: str, node: Node | None) -> None:
        if node is None:  # held back by failFast
            self.blocked.add(name)
            return
        self.nodes[name] = node
        items = self.items.get(name) if node.type == "TaskGroup" else None
        self.finished[name] = finished_scope(self.run, "tasks", name, node, items)

    # --- one task -----------------------------------------------------------------------

    def _run_task(self, name: str, scope: Scope) -> Node | None:
        """Run one task: `when`, then its loop or a single call. Errors become Error nodes."""
        task = self.tasks[name]
        where = f"{self.node.name}.{name}"
        try:
            proceed, when = resolve_when(task, scope, where)
            if proceed is False:
                return self._leaf(name, "Skipped", "Skipped", f"when '{when}' evaluated false")
            calls = expand(task, scope, where, name, where)
            if calls is None:
                args = arguments(task, scope, where)
        except RunError as exc:
            return self._leaf(name, "Skipped", "Error", str(exc))
        if calls is None:
            return self.run.execute_template(
                task, self.frame, where, name, self._parents(name), args, scope, self.node.id
            )
        if not calls:
            return self._leaf(name, "Skipped", "Skipped", "Skipped, empty params")
        group = self._node(task, where, name, "TaskGroup", self._parents(name))
        self.run.set_phase(group, "Running")
        with ThreadPoolExecutor(max_workers=min(len(calls), MAX_THREADS)) as pool:
            futures = [pool.submit(self._run_item, task, call, group) for call in calls]
            children = [c for c in (f.result() for f in futures) if c is not None]
        self.items[name] = children
        phase = "Succeeded"
        for child in children:
            if child.phase in FAILED:
                phase = child.phase
        self.run.set_phase(group, phase)
        return group

    def _run_item(self, task: dict[str, Any], call: Call, group: Node) -> Node | None:
        try:
            if not should_execute(call.when, call.name):
                node = self._node(task, call.name, call.display, "Skipped", [group])
                self.run.set_phase(node, "Skipped", f"when '{call.when}' evaluated false")
                return node
            args = arguments(task, call.scope, call.name)
        except RunError as exc:
            node = self._node(task, call.name, call.display, "Skipped", [group])
            self.run.set_phase(node, "Error", str(exc))
            return node
        return self.run.execute_template(
            task, self.frame, call.name, call.display, [group], args, call.scope, self.node.id
        )

    # --- the outcome ----------------------------------------------------------------------

    def _conclude(self, tripped: bool) -> None:
        node = self.node
        node.outbound_nodes = [
            o.id for t in self.targets if t in self.nodes for o in self.run.outbound(self.nodes[t])
        ]
        if self.run.stopping.is_set():
            node.phase, node.message = "Failed", self.run.stop_reason
            return
        if tripped:
            node.phase = "Failed"
            node.message = "template has failed or errored children and failFast enabled"
            return
        phase, cause = self._assess()
        node.phase = phase
        if phase in FAILED and cause is not None:
            root = self.run.root_cause(cause)
            node.message = f"child '{cause.id}' failed" + (
                f": {root.message}" if root.message else ""
            )

    def _assess(self) -> tuple[str, Node | None]:
        """Argo's `assessDAGPhase` over the finished tasks; returns the phase and its cause."""
        below: dict[str, list[str]] = {name: [] for name in self.nodes}
        for name in self.nodes:
            for dep in self.deps[name]:
                if dep in below:
                    below[dep].append(name)
        roots = [name for name in sorted(self.nodes) if not self.deps[name]]
        queue: deque[tuple[str, str, Node | None]] = deque((r, "Succeeded", None) for r in roots)
        seen = {(r, "Succeeded") for r in roots}
        deduced: dict[str, tuple[str, Node | None]] = {}
        while queue:
            name, branch, cause = queue.popleft()
            node = self.nodes[name]
            if node.phase in COMPLETED:
                branch, cause = node.phase, node
            if name in self.targets and deduced.get(name, ("", None))[0] not in FAILED:
                deduced[name] = (branch, cause)
            arrivals = [(branch, cause)]
            if node.type == "TaskGroup" and self.items.get(name):
                arrivals = [
                    (c.phase, c) if c.phase in COMPLETED else (branch, cause)
                    for c in self.items[name]
                ]
            for child in below[name]:
                for phase, why in arrivals:
                    if (child, phase) not in seen:
                        seen.add((child, phase))
                        queue.append((child, phase, why))
        fail_fast = self.template["dag"].get("failFast", True) is not False
        result: tuple[str, Node | None] = ("Succeeded", None)
        for name in self.targets:
            phase, cause = deduced.get(name, ("", None))
            if phase in FAILED and not continues_on(self.tasks[name], phase):
                result = (phase, cause)
                if fail_fast:
                    break
        return result


def run_dag(run: Run, node: Node, template: dict[str, Any], scope: Scope, frame: Frame) -> Scope:
    """Run a DAG template's tasks; sets the node's phase; returns the tasks' output scope.

    `frame` is where the DAG template runs: its tasks' `template:` names resolve there.
    """
    return _Dag(run, node, template, scope, frame).execute()

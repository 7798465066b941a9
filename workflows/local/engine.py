"""The local engine: executes a compiled Argo Workflow on this machine, with Argo's semantics.

`Run(workflow).execute()` walks the same YAML `llmflow submit` sends to Argo: DAGs and steps,
`when` and `depends`, loops, retries with backoff, deadlines, suspend, mutexes, the exit
handler (`globals.py`, with the `workflow.*` variables). Container and script templates run
as local processes with the pod's command; resource templates go to the LocalPlatform
(`pod.py`). Node names and ids follow Argo's scheme
(`wf.task`, `wf[0].step`, `wf.task(1)` for retries, `wf.task(0:item)` for loops), and the
status is written to the run folder after every change. `templateRef`s and a
`workflowTemplateRef` resolve against the WorkflowTemplates in the local store (`refs.py`).
"""

from __future__ import annotations

import os
import random
import signal
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from workflows.exceptions import RunError
from workflows.local import dag, leaves, outputs, retries, steps
from workflows.local.globals import (
    base_scope,
    global_scope,
    run_exit_handler,
    set_global,
    workflow_parameters,
)
from workflows.local.images import ImageMap
from workflows.local.inputs import bind_inputs, input_scope
from workflows.local.limits import Gate, OpenGate
from workflows.local.loading import load
from workflows.local.paths import local_volumes
from workflows.local.platform import LocalPlatform
from workflows.local.pod import run_leaf
from workflows.local.refs import MAX_DEPTH_MESSAGE, MAX_STACK_DEPTH, Frame
from workflows.local.scope import Scope
from workflows.local.store import DEFAULT_ROOT, DONE, FAILED, Node, RunStore, node_type, now
from workflows.local.support import check_supported
from workflows.local.sync import hold_mutexes
from workflows.local.templates import LocalTemplates

_OPEN = OpenGate()

#: Workflow phase from the entry node's phase (operator.go).
_WORKFLOW_PHASE = {
    "Succeeded": "Succeeded",
    "Skipped": "Succeeded",
    "Omitted": "Succeeded",
    "Failed": "Failed",
    "Error": "Error",
}


@dataclass
class RunOptions:
    """Where and how a local run happens.

    Attributes:
        root: The llmflow folder (`.llmflow`): runs, volumes, locks, local objects.
        workdir: Where processes start (the project, so `python -m steps....` imports).
        env: Environment of processes; Secrets not created locally are read from it too.
        parameters: Overrides of the Workflow's arguments (`--set name=value`).
        on_change: Called (under the run's lock) after every node change.
        images: Entrypoints of images whose containers give no command (`images.py`).
        templates: The WorkflowTemplates `templateRef` and `workflowTemplateRef` name; None for
            the store under `root` (what `llmflow templates apply --local` writes).
    """

    root: Path = DEFAULT_ROOT
    workdir: Path = field(default_factory=Path.cwd)
    env: dict[str, str] | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    on_change: Callable[[Run], None] | None = None
    images: ImageMap = field(default_factory=dict)
    templates: LocalTemplates | None = None


def _fnv32a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


class Run:
    """One execution of a Workflow."""

    def __init__(self, workflow: dict[str, Any], options: RunOptions | None = None) -> None:
        self.options = options or RunOptions()
        self.root = Path(self.options.root).resolve()
        self.template_store = self.options.templates or LocalTemplates(self.root)
        if not isinstance(workflow, dict) or workflow.get("kind") != "Workflow":
            check_supported(workflow, self.options.images)  # refuses it, naming the kind
        meta = workflow.get("metadata") or {}
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        self.name = meta.get("name") or f"{meta.get('generateName', 'workflow-')}{suffix}"
        self.namespace = meta.get("namespace") or "default"
        self.uid = str(uuid.uuid4())  # what owner references of the objects it creates name
        self.workflow, self.resolver = load(
            workflow, self.name, self.namespace, self.template_store, self.options.images
        )
        spec = self.workflow["spec"]
        self.spec = spec
        self.templates = dict(self.resolver.local.templates)
        self.workdir = Path(self.options.workdir).resolve()
        self.env = dict(os.environ if self.options.env is None else self.options.env)
        self.env["LLMFLOW_SERVICES"] = str(self.root / "platform" / "services.json")
        self.store = RunStore(self.root, self.name)
        self.platform = LocalPlatform(self.root, self.namespace, self.env, self.workdir)
        self.parameters = workflow_parameters(spec, self.options.parameters)
        self.volumes = local_volumes(self.root, spec.get("volumes") or [], self.store.path)
        self.nodes: dict[str, Node] = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.phase = "Pending"
        self.message = ""
        self.started_at = self.finished_at = ""
        self.started = time.time()
        self.global_outputs: dict[str, str] = {}
        self.gates: dict[str, Gate] = {}
        self.images = self.options.images
        limit = spec.get("parallelism")
        self.pod_slots: Any = threading.Semaphore(int(limit)) if limit else nullcontext()
        self._procs: set[Popen[bytes]] = set()
        if spec.get("entrypoint") not in self.templates:
            raise RunError(f"spec.entrypoint {spec.get('entrypoint')!r} names no template")

    # --- bookkeeping ------------------------------------------------------------------------

    def node_id(self, node_name: str) -> str:
        """Argo's node id: the workflow name for the root, else name plus a hash of the node."""
        return self.name if node_name == self.name else f"{self.name}-{_fnv32a(node_name)}"

    def new_node(
        self,
        name: str,
        display: str,
        kind: str,
        parents: list[Node],
        template: str = "",
        boundary: str = "",
        *,
        ref: dict[str, Any] | None = None,
        scope: str | None = None,
    ) -> Node:
        """Create a node below its parents in Argo's node graph, and record it.

        Args:
            name: The node's name (`wf.task`, `wf[0].step`).
            display: Its display name.
            kind: Its type (Pod, DAG, Steps, Retry, ...).
            parents: The nodes it hangs below.
            template: The name of the template it runs.
            boundary: The id of the DAG or steps node it belongs to.
            ref: The `templateRef` it was called with.
            scope: The `templateScope` its template was resolved from (default: the Workflow's).
        """
        node = Node(
            self.node_id(name),
            name,
            display,
            kind,
            template,
            template_ref=ref,
            template_scope=self.resolver.local.scope if scope is None else scope,
            boundary_id=boundary,
        )
        with self.lock:
            self.nodes[node.id] = node
            for parent in parents:
                if node.id not in parent.children:
                    parent.children.append(node.id)
        self.changed()
        return node

    def set_phase(self, node: Node, phase: str, message: str | None = None) -> None:
        """Move a node to a phase, stamping its times."""
        with self.lock:
            if phase == "Running" and not node.started:
                node.started, node.started_at = time.time(), now()
            if phase in DONE:
                if not node.started:
                    node.started, node.started_at = time.time(), now()
                node.finished, node.finished_at = time.time(), now()
            node.phase = phase
            if message is not None:
                node.message = message
        self.changed()

    def changed(self) -> None:
        """Persist the status and tell the viewer."""
        with self.lock:
            self.store.write_status(self.status())
            if self.options.on_change:
                self.options.on_change(self)

    def status(self) -> dict[str, Any]:
        """The run's status in Argo's shape."""
        with self.lock:
            outputs = [
                {"name": k.split(".", 1)[1], "value": v}
                for k, v in self.global_outputs.items()
                if k.startswith("parameters.")
            ]
            pods = [n for n in self.nodes.values() if n.type == "Pod"]
            done = sum(1 for n in pods if n.phase in DONE)
            nodes = {i: n.to_json() for i, n in self.nodes.items()}
            if self.name in nodes:
                nodes[self.name]["progress"] = f"{done}/{len(pods)}"
            return {
                "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
                "phase": self.phase,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
                "message": self.message,
                "progress": f"{done}/{len(pods)}",
                "outputs": {"parameters": outputs} if outputs else {},
                "nodes": nodes,
            }

    @contextmanager
    def tracking(self, proc: Popen[bytes]) -> Iterator[None]:
        """Know a child process while it runs, so a stop can end it."""
        with self.lock:
            self._procs.add(proc)
        try:
            yield
        except BaseException:  # interrupted while waiting on it: it must not outlive us
            _kill_group(proc)
            raise
        finally:
            with self.lock:
                self._procs.discard(proc)

    def stop(self, reason: str) -> None:
        """Stop the run: no new nodes, running processes ended, then the exit handler."""
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.stopping.set()
        with self.lock:
            procs = list(self._procs)
        for proc in procs:
            threading.Thread(target=leaves.terminate, args=(proc,), daemon=True).start()

    def _kill_processes(self) -> None:
        """End every child process group at once (SIGKILL), without waiting."""
        with self.lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc)

    # --- the run ----------------------------------------------------------------------------

    def execute(self) -> str:
        """Run the Workflow to its end; returns the final phase."""
        self.store.write_workflow(self.workflow)
        self.started_at = now()
        self.changed()
        deadline = self.spec.get("activeDeadlineSeconds")
        timer = None
        if deadline not in (None, ""):
            timer = threading.Timer(
                float(deadline), self.stop, args=("Step exceeded its deadline",)
            )
            timer.daemon = True
            timer.start()
        try:
            with self._mutexes(self.spec.get("synchronization"), None):
                self.phase = "Running"
                entry = self.execute_template(
                    {"template": self.spec["entrypoint"]},
                    Frame(self.resolver.local),
                    self.name,
                    self.name,
                    [],
                    {"parameters": dict(self.parameters)},
                    base_scope(self),
                )
                assert entry is not None  # the root has no gate
                self.phase = _WORKFLOW_PHASE.get(entry.phase, "Error")
                self.message = entry.message if self.phase != "Succeeded" else ""
                if self.stopping.is_set() and self.phase != "Succeeded":
                    self.message = self.stop_reason
                run_exit_handler(self)
        except RunError as exc:
            self.phase, self.message = "Error", f"error in entry template execution: {exc}"
        except BaseException:  # a second Ctrl-C, or a bug: leave no process behind
            self.phase, self.message = "Failed", "aborted"
            self._kill_processes()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self.platform.close()
            self.finished_at = now()
            self.changed()
        return self.phase

    # --- workflow variables (globals.py) ---------------------------------------------------

    def set_global(self, key: str, value: str) -> None:
        """Record a `globalName` output for later templates (`globals.set_global`)."""
        set_global(self, key, value)

    def global_scope(self) -> Scope:
        """`workflow.outputs.*` and the duration, as they are now (`globals.global_scope`)."""
        return global_scope(self)

    # --- templates ------------------------------------------------------------------------

    def execute_template(
        self,
        call: dict[str, Any],
        frame: Frame,
        node_name: str,
        display: str,
        parents: list[Node],
        arguments: dict[str, dict[str, str]],
        scope: Scope,
        boundary: str = "",
    ) -> Node | None:
        """Run one template as a node (with its retries); returns the finished node.

        Args:
            call: What names the template: a step, a task, or `{"template": name}`.
            frame: Where the caller runs: `template:` names resolve in its holder.
            node_name: The node's name.
            display: The node's display name.
            parents: The nodes it hangs below.
            arguments: The values of its inputs.
            scope: The variables the caller sees.
            boundary: The id of the DAG or steps node it belongs to.

        Returns None when the boundary's `failFast` has tripped, so the node is never created.
        """
        try:
            callee = self.resolver.resolve(frame.holder, call)
        except RunError as exc:
            raise RunError(f"{exc} (called by {node_name})") from None
        template = callee.template
        gate = self.gates.get(boundary, _OPEN)
        if not gate.enter():
            return None
        try:
            inner = frame.enter(callee)
            too_deep = inner.depth >= MAX_STACK_DEPTH  # executeTemplate's guard on recursion
            retry = self.retry_strategy(template)
            if too_deep:
                kind = "Skipped"
            elif retry is not None:
                kind = "Retry"
            else:
                kind = node_type(template)
            node = self.new_node(
                node_name,
                display,
                kind,
                parents,
                callee.name,
                boundary,
                ref=callee.ref,
                scope=frame.holder.scope,
            )
            if too_deep:
                self.set_phase(node, "Error", MAX_DEPTH_MESSAGE)
                return node
            try:
                inputs = bind_inputs(template, arguments, scope, node_name)
            except RunError as exc:
                self.set_phase(node, "Error", str(exc))
                return node
            node.inputs = {
                "parameters": [{"name": k, "value": v} for k, v in inputs["parameters"].items()]
            }
            if inputs["artifacts"]:
                node.inputs["artifacts"] = [
                    {"name": k, "path": v} for k, v in inputs["artifacts"].items()
                ]
            if self.stopping.is_set():
                self.set_phase(node, "Failed", self.stop_reason)
                return node
            self.set_phase(node, "Running")
            with self._mutexes(template.get("synchronization"), node):
                if retry is not None:
                    retries.run_with_retries(self, node, template, inputs, scope, retry, inner)
                else:
                    self.attempt(node, template, inputs, scope, inner)
            return node
        finally:
            gate.leave()

    def template_of(self, node: Node) -> dict[str, Any] | None:
        """The template a node runs (from its templateScope, templateName and templateRef)."""
        return self.resolver.template_of(node.template_scope, node.template_name, node.template_ref)

    def retry_strategy(self, template: dict[str, Any]) -> dict[str, Any] | None:
        """A template's retryStrategy, else the workflow's (Argo's default for every template)."""
        if template.get("retryStrategy") is not None:
            return dict(template["retryStrategy"])
        strategy = self.spec.get("retryStrategy")
        return None if strategy is None else dict(strategy)

    def gate(self, node: Node, template: dict[str, Any]) -> Gate:
        """The parallelism and failFast gate of a DAG or steps node's children."""
        gate = Gate(template, node, lambda: list(self.nodes.values()))
        with self.lock:
            self.gates[node.id] = gate
        return gate

    def attempt(
        self,
        node: Node,
        template: dict[str, Any],
        inputs: dict[str, dict[str, str]],
        scope: Scope,
        frame: Frame,
    ) -> None:
        """Run the template body once into `node` and collect its outputs.

        `frame` is where the template runs: the calls of a DAG or steps template resolve there.
        """
        scope = {
            **scope,
            **self.global_scope(),
            **input_scope(inputs),
            "pod.name": node.id,
            "node.name": node.name,
        }
        for a in (template.get("inputs") or {}).get("artifacts") or []:
            scope[f"inputs.artifacts.{a['name']}.path"] = a.get("path", "")
            scope[f"inputs.artifacts.{a['name']}"] = inputs["artifacts"].get(a["name"], "")
        try:
            if "dag" in template or "steps" in template:
                run_graph = dag.run_dag if "dag" in template else steps.run_steps
                inner = run_graph(self, node, template, scope, frame)
                if node.phase == "Succeeded":
                    outputs.template_outputs(self, node, template, inner)
            else:
                run_leaf(self, node, template, inputs, scope)
            if node.phase == "Running":
                node.phase = "Succeeded"
        except RunError as exc:
            node.phase, node.message = "Error", str(exc)
        self.set_phase(node, node.phase)

    # --- graph and phases ------------------------------------------------------------------

    def outbound(self, node: Node) -> list[Node]:
        """The nodes a later task hangs below (Argo's `getOutboundNodes`)."""
        if node.type in {"DAG", "Steps"}:
            found = [self.nodes[i] for i in node.outbound_nodes if i in self.nodes]
            return found or [node]
        if node.type == "TaskGroup" and node.children:
            return [o for c in node.children for o in self.outbound(self.nodes[c])]
        if node.type == "Retry" and node.children:
            return self.outbound(self.nodes[node.children[-1]])
        return [node]

    def root_cause(self, node: Node) -> Node:
        """The deepest failed node below a failed one: where its error message is."""
        while not node.message or node.type in {"Retry", "TaskGroup"}:
            failed = [self.nodes[c] for c in node.children if self.nodes[c].phase in FAILED]
            below = [n for n in failed if n.boundary_id in {node.id, node.boundary_id}] or failed
            if not below:
                return node
            node = below[-1] if node.type == "Retry" else below[0]
        return node

    # --- locks -----------------------------------------------------------------------------

    def _mutexes(self, sync: dict[str, Any] | None, node: Node | None) -> Any:
        """Hold a workflow's (node None) or template's mutexes; waiting shows on it."""

        def on_wait(message: str) -> None:
            if node is None:
                self.message = message
                self.changed()
            else:
                self.set_phase(node, node.phase, message)

        return hold_mutexes(self.root, self.namespace, sync, lambda: self.stopping, on_wait)


def _kill_group(proc: Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

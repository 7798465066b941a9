"""The local engine: executes a compiled Argo Workflow on this machine, with Argo's semantics.

`Run(workflow).execute()` walks the same YAML `llmflow submit` sends to Argo: DAGs and steps,
`when` and `depends`, loops, retries with backoff, deadlines, suspend, mutexes, the exit
handler. Container and script templates run as local processes with the pod's command;
resource templates go to the LocalPlatform. Node names and ids follow Argo's scheme
(`wf.task`, `wf[0].step`, `wf.task(1)` for retries, `wf.task(0:item)` for loops), and the
status is written to the run folder after every change. `templateRef`s and a
`workflowTemplateRef` resolve against the WorkflowTemplates in the local store (`refs.py`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from workflows.exceptions import RunError
from workflows.local import dag, leaves, outputs, retries, steps
from workflows.local.expressions import substitute_all
from workflows.local.git import load_git_inputs
from workflows.local.images import ImageMap, entrypoint
from workflows.local.inputs import bind_inputs, input_scope
from workflows.local.limits import Gate, OpenGate
from workflows.local.loading import load
from workflows.local.paths import PathMapper, local_volumes, mapper_for, pod_volumes
from workflows.local.platform import LocalPlatform
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
        self.parameters = self._parameters(spec, self.options.parameters)
        self.volumes = local_volumes(self.root, spec.get("volumes") or [], self.store.path)
        self.nodes: dict[str, Node] = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.phase = "Pending"
        self.message = ""
        self.started_at = self.finished_at = ""
        self._started = time.time()
        self.global_outputs: dict[str, str] = {}
        self.gates: dict[str, Gate] = {}
        self.images = self.options.images
        limit = spec.get("parallelism")
        self.pod_slots: Any = threading.Semaphore(int(limit)) if limit else nullcontext()
        self._procs: set[Popen[bytes]] = set()
        if spec.get("entrypoint") not in self.templates:
            raise RunError(f"spec.entrypoint {spec.get('entrypoint')!r} names no template")

    # --- setup -----------------------------------------------------------------------------

    def _parameters(self, spec: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
        declared = (spec.get("arguments") or {}).get("parameters") or []
        values = {p["name"]: p.get("value") for p in declared}
        unknown = set(overrides) - set(values)
        if unknown:
            raise RunError(
                f"--set {', '.join(sorted(unknown))}: no such workflow parameter; "
                f"parameters: {', '.join(values) or 'none'}"
            )
        values.update(overrides)
        for p in declared:
            value = values[p["name"]]
            if value is None:
                raise RunError(f"workflow parameter {p['name']!r} has no value; --set it")
            if p.get("enum") and str(value) not in [str(e) for e in p["enum"]]:
                raise RunError(
                    f"workflow parameter {p['name']} = {value!r} is not one of {p['enum']}"
                )
        return {k: str(v) for k, v in values.items()}

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
                "metadata": {"name": self.name, "namespace": self.namespace},
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
                    self.base_scope(),
                )
                assert entry is not None  # the root has no gate
                self.phase = _WORKFLOW_PHASE.get(entry.phase, "Error")
                self.message = entry.message if self.phase != "Succeeded" else ""
                if self.stopping.is_set() and self.phase != "Succeeded":
                    self.message = self.stop_reason
                self._exit_handler()
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

    def _exit_handler(self) -> None:
        """Run `onExit`; a failing handler fails a workflow that had succeeded (operator.go)."""
        handler = self.spec.get("onExit")
        if not handler:
            return
        self.stopping = threading.Event()  # a stopped run still runs its exit handler
        failures = [
            {
                "displayName": n.display_name,
                "message": n.message,
                "templateName": n.template_name,
                "phase": n.phase,
                "podName": n.id,
                "finishedAt": n.finished_at,
            }
            for n in self.nodes.values()
            if n.phase in FAILED
        ]
        # The global outputs so far are globals too (operator.go `addParamToGlobalScope`).
        scope = {
            **self.base_scope(),
            **self.global_scope(),
            "workflow.status": self.phase,
            "workflow.failures": json.dumps(failures) if failures else "null",
        }
        name = f"{self.name}.onExit"
        node = self.execute_template(
            {"template": handler}, Frame(self.resolver.local), name, name, [], {}, scope
        )
        if node is not None and self.phase == "Succeeded" and node.phase in FAILED:
            self.phase = "Failed" if node.phase == "Failed" else "Error"
            self.message = self.root_cause(node).message

    def base_scope(self) -> Scope:
        """Variables every template sees."""
        scope = {
            "workflow.name": self.name,
            "workflow.namespace": self.namespace,
            "workflow.uid": self.name,
            "workflow.mainEntrypoint": str(self.spec.get("entrypoint", "")),
            "workflow.creationTimestamp": self.started_at,
            "workflow.serviceAccountName": str(self.spec.get("serviceAccountName", "")),
            "workflow.parameters": json.dumps(
                [{"name": k, "value": v} for k, v in self.parameters.items()]
            ),
            "workflow.parameters.json": json.dumps(
                [{"name": k, "value": v} for k, v in self.parameters.items()]
            ),
        }
        scope.update({f"workflow.parameters.{k}": v for k, v in self.parameters.items()})
        meta = self.workflow.get("metadata") or {}
        for kind in ("labels", "annotations"):
            values = meta.get(kind) or {}
            scope[f"workflow.{kind}"] = json.dumps(values)
            scope.update({f"workflow.{kind}.{k}": str(v) for k, v in values.items()})
        return scope

    def set_global(self, key: str, value: str) -> None:
        """Record a `globalName` output (`parameters.x` or `artifacts.x`) for later templates."""
        with self.lock:
            self.global_outputs[key] = value

    def global_scope(self) -> Scope:
        """Variables that change as the run goes: `workflow.outputs.*`, the duration."""
        with self.lock:
            scope = {f"workflow.outputs.{k}": v for k, v in self.global_outputs.items()}
        scope["workflow.duration"] = str(round(time.time() - self._started, 3))
        return scope

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
                self._leaf(node, template, inputs, scope)
            if node.phase == "Running":
                node.phase = "Succeeded"
        except RunError as exc:
            node.phase, node.message = "Error", str(exc)
        self.set_phase(node, node.phase)

    def _leaf(
        self, node: Node, template: dict[str, Any], inputs: dict[str, dict[str, str]], scope: Scope
    ) -> None:
        # Metrics are the controller's bookkeeping (`{{status}}` exists only there): not run.
        body = {k: v for k, v in template.items() if k != "metrics"}
        # Input parameters are bound already (`inputs`); their defaults may keep what Argo
        # leaves unresolved (an exit handler's global output no step set).
        unbound = dict(body.get("inputs") or {})
        parameters = unbound.pop("parameters", None)
        resolved = substitute_all(
            {**body, "inputs": unbound}, scope, f"template {template['name']}"
        )
        if parameters is not None:
            resolved["inputs"]["parameters"] = parameters
        if not resolved["inputs"] and "inputs" not in template:
            del resolved["inputs"]
        if "resource" in resolved:
            obj = leaves.run_resource(self, node, resolved)
            if node.phase == "Succeeded":
                outputs.resource_outputs(node, resolved, obj)
        elif "suspend" in resolved:
            leaves.run_suspend(self, node, resolved, self.changed)
        else:
            mapper = self._mapper(node, resolved)
            declared = (resolved.get("inputs") or {}).get("artifacts") or []
            outputs.stage_artifacts(inputs["artifacts"], declared, mapper)
            body = resolved.get("container") or resolved.get("script") or {}
            command = body.get("command") or entrypoint(self.images, str(body.get("image", "")))
            with self.pod_slots:
                try:  # the init container's part: a failure is its Error (operator.go)
                    load_git_inputs(
                        declared, inputs["artifacts"], mapper.local, self.env, self.tracking
                    )
                except RunError:
                    if not self.stopping.is_set():
                        raise
                    node.phase, node.message = "Failed", self.stop_reason
                    return
                leaves.run_process(self, node, resolved, mapper, command or [])
            # Argo's wait container saves outputs whether or not main succeeded
            # (executor/postmain.go): a failed step's report is still an artifact.
            if node.phase == "Succeeded":
                outputs.file_outputs(self, node, resolved.get("outputs") or {}, mapper, scope)
            elif node.phase == "Failed" and not self.stopping.is_set():
                outputs.file_outputs(
                    self, node, resolved.get("outputs") or {}, mapper, scope, lenient=True
                )

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

    # --- paths and locks -------------------------------------------------------------------

    def _mapper(self, node: Node, template: dict[str, Any]) -> PathMapper:
        body = template.get("container") or template.get("script") or {}
        node_dir = self.store.node_dir(node.id)
        volumes = pod_volumes(self.platform, self.volumes, self.spec, template, node_dir)
        mapper = mapper_for(body, volumes, node_dir / "fs")
        declared = template.get("outputs") or {}
        for p in declared.get("parameters") or []:
            path = (p.get("valueFrom") or {}).get("path")
            if path:
                mapper.declare_output(path)
        for a in [
            *(declared.get("artifacts") or []),
            *((template.get("inputs") or {}).get("artifacts") or []),
        ]:
            if a.get("path"):
                mapper.declare_output(a["path"])
        for env in body.get("env") or []:
            if env.get("name") == "hera__outputs_directory" and env.get("value"):
                mapper.declare(env["value"])
        return mapper

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

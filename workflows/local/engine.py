"""The local engine: executes a compiled Argo Workflow on this machine, with Argo's semantics.

`Run(workflow).execute()` walks the same YAML `llmflow submit` sends to Argo: DAGs and steps,
`when` and `depends`, loops, retries with backoff, deadlines, suspend, mutexes, the exit
handler. Container and script templates run as local processes with the pod's command;
resource templates go to the LocalPlatform. Node names and ids follow Argo's scheme
(`wf.task`, `wf[0].step`, `wf.task(1)` for retries, `wf.task(0:item)` for loops), and the
status is written to the run folder after every change.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from workflows.exceptions import RunError
from workflows.local import graph, leaves
from workflows.local.expressions import substitute, substitute_all
from workflows.local.paths import PathMapper, local_volumes, mapper_for
from workflows.local.platform import LocalPlatform
from workflows.local.store import DEFAULT_ROOT, DONE, Node, RunStore, now
from workflows.local.support import check_supported
from workflows.local.sync import hold_mutexes

Scope = dict[str, str]


@dataclass
class RunOptions:
    """Where and how a local run happens.

    Attributes:
        root: The llmflow folder (`.llmflow`): runs, volumes, locks, local objects.
        workdir: Where processes start (the project, so `python -m steps....` imports).
        env: Environment of processes; Secrets not created locally are read from it too.
        parameters: Overrides of the Workflow's arguments (`--set name=value`).
        on_change: Called (under the run's lock) after every node change.
    """

    root: Path = DEFAULT_ROOT
    workdir: Path = field(default_factory=Path.cwd)
    env: dict[str, str] | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    on_change: Callable[[Run], None] | None = None


def _fnv32a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


class Run:
    """One execution of a Workflow."""

    def __init__(self, workflow: dict[str, Any], options: RunOptions | None = None) -> None:
        check_supported(workflow)
        self.options = options or RunOptions()
        self.workflow = workflow
        meta, spec = workflow.get("metadata") or {}, workflow["spec"]
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        self.name = meta.get("name") or f"{meta.get('generateName', 'workflow-')}{suffix}"
        self.namespace = meta.get("namespace") or "default"
        self.spec = spec
        self.templates = {t["name"]: t for t in spec.get("templates", [])}
        self.root = Path(self.options.root).resolve()
        self.workdir = Path(self.options.workdir).resolve()
        self.env = dict(os.environ if self.options.env is None else self.options.env)
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
        self.global_outputs: dict[str, str] = {}
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
        parent: Node | None,
        template: str = "",
        boundary: str = "",
    ) -> Node:
        """Create a node under a parent and record it."""
        node = Node(self.node_id(name), name, display, kind, template, boundary_id=boundary)
        with self.lock:
            self.nodes[node.id] = node
            if parent is not None:
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
            outputs = [{"name": k, "value": v} for k, v in self.global_outputs.items()]
            return {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "phase": self.phase,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
                "message": self.message,
                "outputs": {"parameters": outputs} if outputs else {},
                "nodes": {i: n.to_json() for i, n in self.nodes.items()},
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
                float(deadline), self.stop, args=("Max duration limit exceeded",)
            )
            timer.daemon = True
            timer.start()
        try:
            with self._mutexes(self.spec.get("synchronization"), None):
                self.phase = "Running"
                root = self.execute_template(
                    self.spec["entrypoint"], self.name, self.name, None, {}, self.base_scope()
                )
                self.phase = "Succeeded" if root.phase == "Succeeded" else "Failed"
                self.message = root.message if self.phase != "Succeeded" else ""
                if self.stopping.is_set():
                    self.phase, self.message = "Failed", self.stop_reason
                self._exit_handler()
        except RunError as exc:
            self.phase, self.message = "Error", str(exc)
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
            if n.phase in {"Failed", "Error"} and n.type == "Pod"
        ]
        scope = {
            **self.base_scope(),
            "workflow.status": self.phase,
            "workflow.failures": json.dumps(failures),
        }
        node = self.execute_template(
            handler, f"{self.name}.onExit", f"{self.name}.onExit", None, {}, scope
        )
        if node.phase != "Succeeded":
            self.phase = "Failed"
            self.message = self.message or f"exit handler {handler} {node.phase}"

    def base_scope(self) -> Scope:
        """Variables every template sees."""
        scope = {
            "workflow.name": self.name,
            "workflow.namespace": self.namespace,
            "workflow.uid": self.name,
            "workflow.creationTimestamp": self.started_at,
            "workflow.serviceAccountName": str(self.spec.get("serviceAccountName", "")),
            "workflow.parameters": json.dumps(
                [{"name": k, "value": v} for k, v in self.parameters.items()]
            ),
        }
        scope.update({f"workflow.parameters.{k}": v for k, v in self.parameters.items()})
        return scope

    # --- templates ------------------------------------------------------------------------

    def execute_template(
        self,
        template_name: str,
        node_name: str,
        display: str,
        parent: Node | None,
        arguments: dict[str, dict[str, str]],
        scope: Scope,
        boundary: str = "",
    ) -> Node:
        """Run one template as a node (with its retries); returns the finished node."""
        template = self.templates.get(template_name)
        if template is None:
            raise RunError(f"no template named {template_name!r} (called by {node_name})")
        inputs = self._inputs(template, arguments, node_name)
        retry = template.get("retryStrategy")
        kind = "Retry" if retry else _node_type(template)
        node = self.new_node(node_name, display, kind, parent, template_name, boundary)
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
            if retry:
                self._retry(node, template, inputs, scope, retry)
            else:
                self._attempt(node, template, inputs, scope)
        return node

    def _inputs(
        self, template: dict[str, Any], arguments: dict[str, dict[str, str]], node_name: str
    ) -> dict[str, dict[str, str]]:
        params, artifacts = {}, {}
        given = arguments.get("parameters", {})
        for p in (template.get("inputs") or {}).get("parameters") or []:
            if p["name"] in given:
                value = given[p["name"]]
            elif "value" in p:
                value = str(p["value"])
            elif "default" in p:
                value = str(p["default"])
            else:
                raise RunError(f"{node_name}: input parameter {p['name']!r} was not supplied")
            if p.get("enum") and value not in [str(e) for e in p["enum"]]:
                raise RunError(
                    f"{node_name}: input {p['name']} = {value!r} is not one of {p['enum']}"
                )
            params[p["name"]] = value
        for a in (template.get("inputs") or {}).get("artifacts") or []:
            source = arguments.get("artifacts", {}).get(a["name"])
            if source is None and not a.get("optional"):
                raise RunError(f"{node_name}: input artifact {a['name']!r} was not supplied")
            if source is not None:
                artifacts[a["name"]] = source
        return {"parameters": params, "artifacts": artifacts}

    def _retry(
        self,
        node: Node,
        template: dict[str, Any],
        inputs: dict[str, dict[str, str]],
        scope: Scope,
        retry: dict[str, Any],
    ) -> None:
        limit = int(retry.get("limit", 0) or 0)
        policy = retry.get("retryPolicy") or "OnFailure"
        backoff = retry.get("backoff") or {}
        delay = leaves.duration_seconds(str(backoff.get("duration") or "")) or 0.0
        factor = float(backoff.get("factor") or 1)
        max_total = leaves.duration_seconds(str(backoff.get("maxDuration") or ""))
        started = time.monotonic()
        for attempt in range(limit + 1):
            child_name = f"{node.name}({attempt})"
            child = self.new_node(
                child_name,
                child_name.rsplit(".", 1)[-1],
                _node_type(template),
                node,
                template["name"],
                node.boundary_id,
            )
            self.set_phase(child, "Running")
            self._attempt(child, template, inputs, {**scope, "retries": str(attempt)})
            node.outputs = child.outputs
            if child.phase == "Succeeded":
                self.set_phase(node, "Succeeded", "")
                return
            retryable = {
                "Always": {"Failed", "Error"},
                "OnFailure": {"Failed"},
                "OnError": {"Error"},
                "OnTransientError": {"Error"},
            }[policy]
            out_of_time = max_total is not None and time.monotonic() - started + delay > max_total
            if (
                child.phase not in retryable
                or attempt == limit
                or out_of_time
                or self.stopping.is_set()
            ):
                message = child.message if child.phase not in retryable else "No more retries left"
                self.set_phase(node, child.phase, message)
                return
            if delay:
                self.stopping.wait(delay)
                delay *= factor

    def _attempt(
        self, node: Node, template: dict[str, Any], inputs: dict[str, dict[str, str]], scope: Scope
    ) -> None:
        """Run the template body once into `node` and collect its outputs."""
        scope = {**scope, **_input_scope(inputs), "pod.name": node.id, "node.name": node.name}
        for a in (template.get("inputs") or {}).get("artifacts") or []:
            scope[f"inputs.artifacts.{a['name']}.path"] = a.get("path", "")
        inner: Scope = {}
        try:
            resolved = substitute_all(
                {k: v for k, v in template.items() if k not in {"dag", "steps", "outputs"}},
                scope,
                f"template {template['name']}",
            )
            if "dag" in template:
                inner = graph.run_dag(self, node, template, scope)
            elif "steps" in template:
                inner = graph.run_steps(self, node, template, scope)
            elif "resource" in resolved:
                obj = leaves.run_resource(self, node, resolved)
                if node.phase == "Succeeded":
                    self._resource_outputs(node, template, obj)
            elif "suspend" in resolved:
                leaves.run_suspend(self, node, resolved, self.changed)
            else:
                mapper = self._mapper(node, {**resolved, "outputs": template.get("outputs")})
                self._stage_artifacts(inputs["artifacts"], template, mapper)
                leaves.run_process(self, node, resolved, mapper)
                if node.phase == "Succeeded":
                    self._file_outputs(node, template, mapper, scope)
            if node.phase == "Running":
                node.phase = "Succeeded"
            if node.phase == "Succeeded" and ("dag" in template or "steps" in template):
                self._parameter_outputs(node, template, inner)
        except RunError as exc:
            node.phase, node.message = "Error", str(exc)
        self.set_phase(node, node.phase)

    # --- paths and outputs -----------------------------------------------------------------

    def _mapper(self, node: Node, template: dict[str, Any]) -> PathMapper:
        body = template.get("container") or template.get("script") or {}
        mapper = mapper_for(body, self.volumes, self.store.node_dir(node.id) / "fs")
        outputs = template.get("outputs") or {}
        for p in outputs.get("parameters") or []:
            path = (p.get("valueFrom") or {}).get("path")
            if path:
                mapper.declare_output(path)
        for a in [
            *(outputs.get("artifacts") or []),
            *((template.get("inputs") or {}).get("artifacts") or []),
        ]:
            if a.get("path"):
                mapper.declare_output(a["path"])
        for env in body.get("env") or []:
            if env.get("name") == "hera__outputs_directory" and env.get("value"):
                mapper.declare(env["value"])
        return mapper

    def _stage_artifacts(
        self, artifacts: dict[str, str], template: dict[str, Any], mapper: PathMapper
    ) -> None:
        declared = {a["name"]: a for a in (template.get("inputs") or {}).get("artifacts") or []}
        for name, source in artifacts.items():
            target = mapper.local(declared[name]["path"])
            _copy(Path(source), target)

    def _file_outputs(
        self, node: Node, template: dict[str, Any], mapper: PathMapper, scope: Scope
    ) -> None:
        outputs = template.get("outputs") or {}
        params = []
        for p in outputs.get("parameters") or []:
            source = p.get("valueFrom") or {}
            if "path" in source:
                path = mapper.local(source["path"])
                if path.is_file():
                    value = path.read_text().rstrip("\n") if path.stat().st_size else ""
                elif "default" in source:
                    value = str(source["default"])
                else:
                    node.phase = "Error"
                    node.message = f"output parameter {p['name']}: {source['path']} was not written"
                    return
            else:
                value = substitute(str(p.get("value", "")), scope, f"output {p['name']}")
            params.append({"name": p["name"], "value": value})
            if p.get("globalName"):
                self.global_outputs[p["globalName"]] = value
        artifacts = []
        for a in outputs.get("artifacts") or []:
            local = mapper.local(a["path"])
            if not local.exists():
                if a.get("optional"):
                    continue
                node.phase, node.message = (
                    "Error",
                    f"output artifact {a['name']}: {a['path']} missing",
                )
                return
            saved = self.store.path / "artifacts" / node.id / a["name"]
            _copy(local, saved)
            artifacts.append({"name": a["name"], "path": str(saved)})
        if params:
            node.outputs["parameters"] = params
        if artifacts:
            node.outputs["artifacts"] = artifacts

    def _resource_outputs(self, node: Node, template: dict[str, Any], obj: Any) -> None:
        params = []
        for p in (template.get("outputs") or {}).get("parameters") or []:
            expression = (p.get("valueFrom") or {}).get("jsonPath")
            if expression is None:
                raise RunError(f"resource output {p['name']}: only valueFrom.jsonPath is supported")
            params.append({"name": p["name"], "value": leaves.json_path(obj, expression)})
        if params:
            node.outputs["parameters"] = params

    def _parameter_outputs(self, node: Node, template: dict[str, Any], scope: Scope) -> None:
        """Outputs of a dag/steps template: `valueFrom.parameter` over its children's outputs."""
        params = []
        for p in (template.get("outputs") or {}).get("parameters") or []:
            source = (p.get("valueFrom") or {}).get("parameter")
            if source is None:
                raise RunError(f"output {p['name']} of {template['name']}: use valueFrom.parameter")
            value = substitute(source, scope, f"output {p['name']} of {template['name']}")
            params.append({"name": p["name"], "value": value})
            if p.get("globalName"):
                self.global_outputs[p["globalName"]] = value
        if params:
            node.outputs["parameters"] = params

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


def _copy(source: Path, target: Path) -> None:
    """Copy an artifact, a file or a folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def _node_type(template: dict[str, Any]) -> str:
    for key, kind in (("dag", "DAG"), ("steps", "Steps"), ("suspend", "Suspend")):
        if key in template:
            return kind
    return "Pod"


def _input_scope(inputs: dict[str, dict[str, str]]) -> Scope:
    scope = {f"inputs.parameters.{k}": v for k, v in inputs["parameters"].items()}
    scope["inputs.parameters"] = json.dumps(
        [{"name": k, "value": v} for k, v in inputs["parameters"].items()]
    )
    return scope

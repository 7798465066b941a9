"""The workflow's own level: its parameters, the `workflow.*` variables, global outputs, onExit.

Every template sees the same workflow variables (`workflow.name`, `workflow.parameters.x`,
labels and annotations), fixed when the run starts; `globalName` outputs and the duration
change as it goes, so they are read again each time a template starts. The exit handler is
the one template that also sees how the workflow ended (`workflow.status`,
`workflow.failures`), as Argo's controller gives it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.refs import Frame
from workflows.local.scope import Scope
from workflows.local.store import FAILED

if TYPE_CHECKING:
    from workflows.local.engine import Run


def workflow_parameters(spec: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    """The workflow's `arguments.parameters`, with `--set` overrides, checked before the run.

    Raises:
        RunError: an override names no parameter, a parameter has no value, or a value is not
            in its `enum`.
    """
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
            raise RunError(f"workflow parameter {p['name']} = {value!r} is not one of {p['enum']}")
    return {k: str(v) for k, v in values.items()}


def base_scope(run: Run) -> Scope:
    """Variables every template sees."""
    scope = {
        "workflow.name": run.name,
        "workflow.namespace": run.namespace,
        "workflow.uid": run.uid,
        "workflow.mainEntrypoint": str(run.spec.get("entrypoint", "")),
        "workflow.creationTimestamp": run.started_at,
        "workflow.serviceAccountName": str(run.spec.get("serviceAccountName", "")),
        "workflow.parameters": json.dumps(
            [{"name": k, "value": v} for k, v in run.parameters.items()]
        ),
        "workflow.parameters.json": json.dumps(
            [{"name": k, "value": v} for k, v in run.parameters.items()]
        ),
    }
    scope.update({f"workflow.parameters.{k}": v for k, v in run.parameters.items()})
    meta = run.workflow.get("metadata") or {}
    for kind in ("labels", "annotations"):
        values = meta.get(kind) or {}
        scope[f"workflow.{kind}"] = json.dumps(values)
        scope.update({f"workflow.{kind}.{k}": str(v) for k, v in values.items()})
    return scope


def set_global(run: Run, key: str, value: str) -> None:
    """Record a `globalName` output (`parameters.x` or `artifacts.x`) for later templates."""
    with run.lock:
        run.global_outputs[key] = value


def global_scope(run: Run) -> Scope:
    """Variables that change as the run goes: `workflow.outputs.*`, the duration."""
    with run.lock:
        scope = {f"workflow.outputs.{k}": v for k, v in run.global_outputs.items()}
    scope["workflow.duration"] = str(round(time.time() - run.started, 3))
    return scope


def run_exit_handler(run: Run) -> None:
    """Run `onExit`; a failing handler fails a workflow that had succeeded (operator.go)."""
    handler = run.spec.get("onExit")
    if not handler:
        return
    run.stopping = threading.Event()  # a stopped run still runs its exit handler
    failures = [
        {
            "displayName": n.display_name,
            "message": n.message,
            "templateName": n.template_name,
            "phase": n.phase,
            "podName": n.id,
            "finishedAt": n.finished_at,
        }
        for n in run.nodes.values()
        if n.phase in FAILED
    ]
    # The global outputs so far are globals too (operator.go `addParamToGlobalScope`).
    scope = {
        **base_scope(run),
        **global_scope(run),
        "workflow.status": run.phase,
        "workflow.failures": json.dumps(failures) if failures else "null",
    }
    name = f"{run.name}.onExit"
    node = run.execute_template(
        {"template": handler}, Frame(run.resolver.local), name, name, [], {}, scope
    )
    if node is not None and run.phase == "Succeeded" and node.phase in FAILED:
        run.phase = "Failed" if node.phase == "Failed" else "Error"
        run.message = run.root_cause(node).message

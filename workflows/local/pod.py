"""A leaf template run as Argo runs its pod: resolved, then init, main and wait containers.

The template is resolved against the caller's scope first (all but its input parameters,
which are bound already). A resource template goes to the local platform and a suspend
waits; a container or script template stages its input artifacts and clones its git inputs
(the init container), runs its command as a local process (main), then collects its output
files (the wait container), with the pod's paths mapped to folders under the node's folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local import leaves, outputs
from workflows.local.expressions import substitute_all
from workflows.local.git import load_git_inputs
from workflows.local.images import entrypoint
from workflows.local.paths import PathMapper, mapper_for, pod_volumes
from workflows.local.scope import Scope
from workflows.local.store import Node

if TYPE_CHECKING:
    from workflows.local.engine import Run


def run_leaf(
    run: Run,
    node: Node,
    template: dict[str, Any],
    inputs: dict[str, dict[str, str]],
    scope: Scope,
) -> None:
    """Run a container, script, resource or suspend template into `node`, with its outputs.

    Args:
        run: The run the node belongs to.
        node: The node, Running; its phase and message are set here.
        template: The template, unresolved.
        inputs: Its bound input parameters and artifacts.
        scope: The variables it sees.

    Raises:
        RunError: what Argo would refuse too (an unresolved reference, a failing git input).
    """
    # Metrics are the controller's bookkeeping (`{{status}}` exists only there): not run.
    body = {k: v for k, v in template.items() if k != "metrics"}
    # Input parameters are bound already (`inputs`); their defaults may keep what Argo
    # leaves unresolved (an exit handler's global output no step set).
    unbound = dict(body.get("inputs") or {})
    parameters = unbound.pop("parameters", None)
    resolved = substitute_all({**body, "inputs": unbound}, scope, f"template {template['name']}")
    if parameters is not None:
        resolved["inputs"]["parameters"] = parameters
    if not resolved["inputs"] and "inputs" not in template:
        del resolved["inputs"]
    if "resource" in resolved:
        obj = leaves.run_resource(run, node, resolved)
        if node.phase == "Succeeded":
            outputs.resource_outputs(node, resolved, obj)
    elif "suspend" in resolved:
        leaves.run_suspend(run, node, resolved, run.changed)
    else:
        mapper = _mapper(run, node, resolved)
        declared = (resolved.get("inputs") or {}).get("artifacts") or []
        outputs.stage_artifacts(inputs["artifacts"], declared, mapper)
        body = resolved.get("container") or resolved.get("script") or {}
        command = body.get("command") or entrypoint(run.images, str(body.get("image", "")))
        with run.pod_slots:
            try:  # the init container's part: a failure is its Error (operator.go)
                load_git_inputs(declared, inputs["artifacts"], mapper.local, run.env, run.tracking)
            except RunError:
                if not run.stopping.is_set():
                    raise
                node.phase, node.message = "Failed", run.stop_reason
                return
            leaves.run_process(run, node, resolved, mapper, command or [])
        # Argo's wait container saves outputs whether or not main succeeded
        # (executor/postmain.go): a failed step's report is still an artifact.
        if node.phase == "Succeeded":
            outputs.file_outputs(run, node, resolved.get("outputs") or {}, mapper, scope)
        elif node.phase == "Failed" and not run.stopping.is_set():
            outputs.file_outputs(
                run, node, resolved.get("outputs") or {}, mapper, scope, lenient=True
            )


def _mapper(run: Run, node: Node, template: dict[str, Any]) -> PathMapper:
    """The pod's paths as folders of this node, with every path it reads or writes declared.

    Output and input artifact paths, output parameter files and Hera's outputs directory are
    rewritten to the node's folder, so a step finds there what it would find in its pod.
    """
    body = template.get("container") or template.get("script") or {}
    node_dir = run.store.node_dir(node.id)
    volumes = pod_volumes(run.platform, run.volumes, run.spec, template, node_dir)
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

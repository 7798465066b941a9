"""The model-cache pre-warm DaemonSet: the fetch-weights step, once on every GPU node.

Built from the rendered `fetch-weights` Workflow rather than written again: the container's
command, arguments, environment and mounts are the step template's, with the workflow's
parameters filled in, so the DaemonSet runs exactly what the pipeline runs. The inputs file
that Argo writes for a script template (`{{inputs.parameters}}`) comes from a ConfigMap.

The fetch exits when the weights are cached, and a DaemonSet's pods must keep running
(`restartPolicy: Always`: an exiting container would be restarted, fetching again and again).
So the fetch is an initContainer, run once per pod (per node, and per rollout of the
DaemonSet), and a pause container keeps the pod Running at almost no cost; the pod's
readiness then says the node's cache is warm. A restarted pod costs a cache hit: one listing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from steps._hera import CACHE_VOLUME
from workflows.exceptions import LLMFlowError
from workflows.spec import ReleaseSpec

#: The fetch step's template in the fetch-weights pipeline.
FETCH_TEMPLATE = "fetch-weights"

#: Node label of GPU nodes (set by NVIDIA's GPU feature discovery); overlays change it.
GPU_NODE_LABEL = "nvidia.com/gpu.present"

#: Taint key that keeps non-GPU work off GPU nodes; the DaemonSet tolerates it.
GPU_TAINT = "nvidia.com/gpu"

#: Where the inputs file is mounted (`python -m hera.workflows.runner -e ... <file>`).
INPUTS_DIR = "/etc/llmflow/prewarm"
INPUTS_FILE = "inputs.json"

#: A container that does nothing, for ever, at no cost: it keeps the pod Running.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

_PARAMETER = re.compile(r"\{\{workflow\.parameters\.([A-Za-z0-9_-]+)\}\}")


class PrewarmError(LLMFlowError):
    """The fetch-weights Workflow lacks what the pre-warm DaemonSet is built from."""


def fetch_step(workflow: dict[str, Any]) -> dict[str, Any]:
    """The fetch-weights step template of a rendered Workflow.

    Raises:
        PrewarmError: the Workflow has no script template of that name.
    """
    for template in workflow["spec"]["templates"]:
        if template["name"] == FETCH_TEMPLATE and "script" in template:
            return template
    raise PrewarmError(f"the Workflow has no script template {FETCH_TEMPLATE!r}")


def _fill(value: Any, parameters: dict[str, str]) -> Any:
    """`value` with every `{{workflow.parameters.x}}` replaced by the parameter's value."""
    text = json.dumps(value)
    filled = _PARAMETER.sub(lambda m: json.dumps(parameters[m.group(1)])[1:-1], text)
    if "{{" in filled:
        raise PrewarmError(f"cannot resolve an Argo expression outside a workflow: {filled}")
    return json.loads(filled)


def step_inputs(workflow: dict[str, Any]) -> list[dict[str, str]]:
    """The fetch step's inputs as Argo passes them: the DAG task's arguments, else defaults.

    Raises:
        PrewarmError: the step is not called from the entrypoint DAG, or an input has no value.
    """
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    tasks = [
        task
        for template in workflow["spec"]["templates"]
        for task in (template.get("dag") or {}).get("tasks", [])
        if task.get("template") == FETCH_TEMPLATE
    ]
    if not tasks:
        raise PrewarmError(f"no DAG task runs {FETCH_TEMPLATE!r}")
    given = {a["name"]: a["value"] for a in tasks[0].get("arguments", {}).get("parameters", [])}
    inputs = []
    for declared in fetch_step(workflow)["inputs"]["parameters"]:
        value = given.get(declared["name"], declared.get("default"))
        if value is None:
            raise PrewarmError(f"input {declared['name']!r} of {FETCH_TEMPLATE!r} has no value")
        inputs.append({"name": declared["name"], "value": _fill(value, parameters)})
    return inputs


def prewarm_objects(spec: ReleaseSpec, workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The ConfigMap of the step's inputs and the DaemonSet, for one model.

    Args:
        spec: The release spec; names the model, namespace and the cache's host path.
        workflow: The rendered fetch-weights Workflow for that spec.

    Raises:
        PrewarmError: the Workflow lacks the fetch step or a value it needs.
    """
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    script = _fill(
        {k: v for k, v in fetch_step(workflow)["script"].items() if k != "source"}, parameters
    )
    name = f"llmflow-prewarm-{spec.model.name}"
    labels = {
        "app.kubernetes.io/part-of": "llmflow",
        "app.kubernetes.io/component": "model-cache-prewarm",
        "llmflow.io/model": spec.model.name,
    }
    metadata = {"name": name, "namespace": spec.namespace, "labels": labels}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {INPUTS_FILE: json.dumps(step_inputs(workflow), indent=2) + "\n"},
    }
    fetch = {
        "name": "fetch-weights",
        "image": script["image"],
        "command": script["command"],
        # Argo appends the file it wrote the inputs to; here the ConfigMap provides it.
        "args": [*script["args"], f"{INPUTS_DIR}/{INPUTS_FILE}"],
        "env": script.get("env", []),
        "volumeMounts": [
            *script.get("volumeMounts", []),
            {"name": "inputs", "mountPath": INPUTS_DIR, "readOnly": True},
        ],
        "resources": {
            "requests": {"cpu": "500m", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},
        },
        "securityContext": {"allowPrivilegeEscalation": False},
        "terminationMessagePolicy": script.get("terminationMessagePolicy", "File"),
    }
    pause = {
        "name": "pause",
        "image": PAUSE_IMAGE,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "50m", "memory": "32Mi"},
        },
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "llmflow-batch",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "nodeSelector": {GPU_NODE_LABEL: "true"},
                    "tolerations": [
                        {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "initContainers": [fetch],
                    "containers": [pause],
                    "volumes": [
                        {
                            "name": CACHE_VOLUME,
                            "hostPath": {
                                "path": spec.model.cache.host_path,
                                "type": "DirectoryOrCreate",
                            },
                        },
                        {"name": "inputs", "configMap": {"name": name}},
                    ],
                },
            },
        },
    }
    return [config_map, daemonset]

"""The subset of Argo the local engine runs, checked when a Workflow is loaded.

Every field of the Workflow must be one the engine implements, or one that only places pods
on a cluster and has no meaning on one machine (image, resources, nodeSelector, ...): those
are accepted and ignored. Anything else fails here, naming the field, before anything runs.
Nothing is skipped silently.
"""

from __future__ import annotations

from typing import Any

from workflows.exceptions import UnsupportedFeature

#: Fields that place or size pods on a cluster; meaningless locally, accepted and ignored.
IGNORED = frozenset(
    {
        "image",
        "imagePullPolicy",
        "resources",
        "securityContext",
        "nodeSelector",
        "tolerations",
        "affinity",
        "serviceAccountName",
        "priorityClassName",
        "podGC",
        "ttlStrategy",
        "labels",
        "annotations",
        "description",
        "enum",
        "schedulerName",
        "automountServiceAccountToken",
        "podMetadata",
        "imagePullSecrets",
        "readOnly",
    }
)

LEAF = "leaf"

_PARAMETER = {
    "name": LEAF,
    "value": LEAF,
    "default": LEAF,
    "globalName": LEAF,
    "valueFrom": {"path": LEAF, "default": LEAF, "parameter": LEAF, "jsonPath": LEAF},
}
_ARTIFACT = {"name": LEAF, "path": LEAF, "from": LEAF, "globalName": LEAF, "optional": LEAF}
_ARGUMENTS = {"parameters": [_PARAMETER], "artifacts": [_ARTIFACT]}
_KEY_REF = {"name": LEAF, "key": LEAF, "optional": LEAF}
_ENV = {
    "name": LEAF,
    "value": LEAF,
    "valueFrom": {"secretKeyRef": _KEY_REF, "configMapKeyRef": _KEY_REF},
}
_CONTAINER = {
    "name": LEAF,
    "command": [LEAF],
    "args": [LEAF],
    "env": [_ENV],
    "workingDir": LEAF,
    "volumeMounts": [{"name": LEAF, "mountPath": LEAF}],
}
_TASK = {
    "name": LEAF,
    "template": LEAF,
    "arguments": _ARGUMENTS,
    "when": LEAF,
    "withItems": [LEAF],
    "withParam": LEAF,
}
_SYNC = {"mutexes": [{"name": LEAF, "namespace": LEAF}]}
_TEMPLATE = {
    "name": LEAF,
    "inputs": {"parameters": [_PARAMETER], "artifacts": [_ARTIFACT]},
    "outputs": {"parameters": [_PARAMETER], "artifacts": [_ARTIFACT]},
    "dag": {"tasks": [{**_TASK, "dependencies": [LEAF], "depends": LEAF}]},
    "steps": [[_TASK]],
    "container": _CONTAINER,
    "script": {**_CONTAINER, "source": LEAF},
    "resource": {
        "action": LEAF,
        "manifest": LEAF,
        "successCondition": LEAF,
        "failureCondition": LEAF,
    },
    "suspend": {"duration": LEAF},
    "retryStrategy": {
        "limit": LEAF,
        "retryPolicy": LEAF,
        "backoff": {"duration": LEAF, "factor": LEAF, "maxDuration": LEAF},
    },
    "activeDeadlineSeconds": LEAF,
    "synchronization": _SYNC,
    "metadata": {},
    "volumes": [LEAF],
}
_WORKFLOW = {
    "apiVersion": LEAF,
    "kind": LEAF,
    "metadata": {"name": LEAF, "generateName": LEAF, "namespace": LEAF},
    "spec": {
        "entrypoint": LEAF,
        "arguments": _ARGUMENTS,
        "templates": [_TEMPLATE],
        "onExit": LEAF,
        "activeDeadlineSeconds": LEAF,
        "synchronization": _SYNC,
        "volumes": [
            {
                "name": LEAF,
                "persistentVolumeClaim": {"claimName": LEAF},
                "hostPath": {"path": LEAF, "type": LEAF},
                "emptyDir": {"medium": LEAF},
            }
        ],
    },
}

_RETRY_POLICIES = {"Always", "OnFailure", "OnError", "OnTransientError"}


def check_supported(workflow: Any) -> None:
    """Raise `UnsupportedFeature` naming every field the local engine would not honour."""
    if not isinstance(workflow, dict) or workflow.get("kind") != "Workflow":
        kind = workflow.get("kind") if isinstance(workflow, dict) else type(workflow).__name__
        raise UnsupportedFeature(
            f"the local engine runs kind Workflow, not {kind!r}; render a Workflow "
            "(`llmflow render PIPELINE -f SPEC`)"
        )
    problems: list[str] = []
    _walk(workflow, _WORKFLOW, "", problems)
    for i, template in enumerate(workflow.get("spec", {}).get("templates", [])):
        policy = (template.get("retryStrategy") or {}).get("retryPolicy")
        if policy and policy not in _RETRY_POLICIES:
            problems.append(f"spec.templates[{i}].retryStrategy.retryPolicy: unknown {policy!r}")
        kinds = [
            k
            for k in ("dag", "steps", "container", "script", "resource", "suspend")
            if k in template
        ]
        if len(kinds) != 1:
            problems.append(
                f"spec.templates[{i}] ({template.get('name')}): needs exactly one of dag, "
                f"steps, container, script, resource, suspend; has {kinds or 'none'}"
            )
    if problems:
        raise UnsupportedFeature(
            "not supported by the local engine:\n  "
            + "\n  ".join(problems)
            + "\nsee README, 'The local engine', for what runs locally"
        )


def _walk(value: Any, shape: Any, path: str, problems: list[str]) -> None:
    if shape == LEAF:
        if isinstance(value, str) and "{{=" in value:
            problems.append(f"{path}: Argo expressions ({{{{=...}}}}) are not supported")
        return
    if isinstance(shape, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, shape[0], f"{path}[{i}]", problems)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key in shape:
            _walk(item, shape[key], where, problems)
        elif key not in IGNORED:
            problems.append(f"{where}: not supported")

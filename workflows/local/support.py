"""The subset of Argo the local engine runs, checked when a Workflow is loaded.

Every field of the Workflow must be one the engine implements, or one that only places pods
on a cluster and has no meaning on one machine (image, resources, nodeSelector, ...): those
are accepted and ignored. Anything else fails here, naming the field, before anything runs.
Nothing is skipped silently. Templates a `templateRef` reaches in a WorkflowTemplate are held
to the same rules as the Workflow's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from workflows.exceptions import UnsupportedFeature
from workflows.local.images import entrypoint

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
        "podPriorityClassName",
        "podDisruptionBudget",
        "metrics",
        "archiveLogs",
        "archive",
        "ports",
        "terminationMessagePath",
        "hostNetwork",
        "dnsPolicy",
    }
)

#: Fields the local engine refuses, with the feature's name for the message.
UNSUPPORTED = {
    "daemon": "daemon steps",
    "data": "data templates",
    "hooks": "lifecycle hooks",
    "http": "http templates",
    "sidecars": "sidecars",
    "initContainers": "init containers",
    "containerSet": "containerSet templates",
    "plugin": "plugin templates (executor plugins)",
    "memoize": "memoization",
    "s3": "S3 artifacts (use a parameter with the URI)",
    "git": "git artifacts outside a container or script template's inputs.artifacts",
    "http_artifact": "http artifacts",
    "raw": "raw artifacts",
    "artifactRepositoryRef": "artifact repositories",
    "podSpecPatch": "podSpecPatch",
    "templateDefaults": "templateDefaults",
    "volumeClaimTemplates": "volumeClaimTemplates",
}

LEAF = "leaf"

_PARAMETER = {
    "name": LEAF,
    "value": LEAF,
    "default": LEAF,
    "globalName": LEAF,
    "valueFrom": {
        "path": LEAF,
        "default": LEAF,
        "parameter": LEAF,
        "jsonPath": LEAF,
        "expression": LEAF,
    },
}
_ARTIFACT = {
    "name": LEAF,
    "path": LEAF,
    "from": LEAF,
    "globalName": LEAF,
    "optional": LEAF,
    "subPath": LEAF,
}
_KEY_REF = {"name": LEAF, "key": LEAF, "optional": LEAF}
#: A git input artifact (git.py); the credential fields are accepted and ignored: git runs
#: with the user's own credentials.
_GIT = {
    "repo": LEAF,
    "revision": LEAF,
    "depth": LEAF,
    "fetch": [LEAF],
    "singleBranch": LEAF,
    "branch": LEAF,
    "disableSubmodules": LEAF,
    "usernameSecret": _KEY_REF,
    "passwordSecret": _KEY_REF,
    "sshPrivateKeySecret": _KEY_REF,
    "insecureIgnoreHostKey": LEAF,
    "insecureSkipTLS": LEAF,
}
_INPUT_ARTIFACT = {**_ARTIFACT, "git": _GIT}
_ARGUMENTS = {"parameters": [_PARAMETER], "artifacts": [_ARTIFACT]}
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
    "terminationMessagePolicy": LEAF,
}
_TASK = {
    "name": LEAF,
    "template": LEAF,
    "templateRef": {"name": LEAF, "template": LEAF, "clusterScope": LEAF},
    "arguments": _ARGUMENTS,
    "when": LEAF,
    "withItems": [LEAF],
    "withParam": LEAF,
    "withSequence": {"count": LEAF, "start": LEAF, "end": LEAF, "format": LEAF},
    "continueOn": {"failed": LEAF, "error": LEAF},
}
_VOLUME = {
    "name": LEAF,
    "persistentVolumeClaim": {"claimName": LEAF},
    "hostPath": {"path": LEAF, "type": LEAF},
    "emptyDir": {"medium": LEAF},
    "secret": {
        "secretName": LEAF,
        "optional": LEAF,
        "defaultMode": LEAF,
        "items": [{"key": LEAF, "path": LEAF, "mode": LEAF}],
    },
}
_SYNC = {"mutexes": [{"name": LEAF, "namespace": LEAF}]}
_RETRY = {
    "limit": LEAF,
    "retryPolicy": LEAF,
    "expression": LEAF,
    "backoff": {"duration": LEAF, "factor": LEAF, "maxDuration": LEAF, "cap": LEAF},
}
_TEMPLATE = {
    "name": LEAF,
    "inputs": {"parameters": [_PARAMETER], "artifacts": [_INPUT_ARTIFACT]},
    "outputs": {"parameters": [_PARAMETER], "artifacts": [_ARTIFACT]},
    "dag": {
        "tasks": [{**_TASK, "dependencies": [LEAF], "depends": LEAF}],
        "target": LEAF,
        "failFast": LEAF,
    },
    "steps": [[_TASK]],
    "container": _CONTAINER,
    "script": {**_CONTAINER, "source": LEAF},
    "resource": {
        "action": LEAF,
        "manifest": LEAF,
        "successCondition": LEAF,
        "failureCondition": LEAF,
        "setOwnerReference": LEAF,
    },
    "suspend": {"duration": LEAF},
    "retryStrategy": _RETRY,
    "activeDeadlineSeconds": LEAF,
    "synchronization": _SYNC,
    "metadata": {},
    "volumes": [_VOLUME],
    "parallelism": LEAF,
    "failFast": LEAF,
}
_WORKFLOW = {
    "apiVersion": LEAF,
    "kind": LEAF,
    "metadata": {"name": LEAF, "generateName": LEAF, "namespace": LEAF},
    "spec": {
        "workflowTemplateRef": {"name": LEAF, "clusterScope": LEAF},
        "entrypoint": LEAF,
        "arguments": _ARGUMENTS,
        "templates": [_TEMPLATE],
        "onExit": LEAF,
        "activeDeadlineSeconds": LEAF,
        "synchronization": _SYNC,
        "retryStrategy": _RETRY,
        "parallelism": LEAF,
        "volumes": [_VOLUME],
    },
}

_RETRY_POLICIES = {"Always", "OnFailure", "OnError", "OnTransientError"}


def check_supported(
    workflow: Any,
    images: Mapping[str, list[str]] | None = None,
    referenced: Iterable[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Raise `UnsupportedFeature` naming every field the local engine would not honour.

    Args:
        workflow: The Workflow as loaded from YAML.
        images: The image map; a container with no command needs its image in it.
        referenced: Templates the Workflow reaches through `templateRef`, each with where it
            lives (`WorkflowTemplate 'common' spec.templates[2]`), checked like its own.
    """
    if not isinstance(workflow, dict) or workflow.get("kind") != "Workflow":
        kind = workflow.get("kind") if isinstance(workflow, dict) else type(workflow).__name__
        raise UnsupportedFeature(
            f"the local engine runs kind Workflow, not {kind!r}; render a Workflow "
            "(`llmflow render PIPELINE -f SPEC`)"
        )
    problems: list[str] = []
    _walk(workflow, _WORKFLOW, "", problems)
    for i, template in enumerate(workflow.get("spec", {}).get("templates", [])):
        where = f"spec.templates[{i}]"
        problems.extend(
            _template_problems(template, where, f"{where} ({template.get('name')})", images)
        )
    for field, template in referenced:
        _walk(template, _TEMPLATE, field, problems)
        where = f"{field} ({template.get('name')})"
        problems.extend(_template_problems(template, field, where, images))
    if problems:
        raise UnsupportedFeature(
            "not supported by the local engine:\n  "
            + "\n  ".join(problems)
            + "\nsee README, 'The local engine', for what runs locally"
        )


def _template_problems(
    template: dict[str, Any], field: str, where: str, images: Mapping[str, list[str]] | None
) -> list[str]:
    """What one template asks beyond its fields' shapes: one body, a known policy, a command."""
    problems = []
    policy = (template.get("retryStrategy") or {}).get("retryPolicy")
    if policy and policy not in _RETRY_POLICIES:
        problems.append(f"{field}.retryStrategy.retryPolicy: unknown {policy!r}")
    kinds = [
        k for k in ("dag", "steps", "container", "script", "resource", "suspend") if k in template
    ]
    if len(kinds) != 1 and not set(template) & set(UNSUPPORTED):
        problems.append(
            f"{where}: needs exactly one of dag, steps, container, script, resource, "
            f"suspend; has {kinds or 'none'}"
        )
    problems.extend(_git_problems(template, field))
    body = template.get("container") or template.get("script")
    if isinstance(body, dict) and not body.get("command"):
        image = str(body.get("image", ""))
        if entrypoint(dict(images or {}), image) is None:
            problems.append(
                f"{where}: the container gives no command, so its image's entrypoint would "
                f"run, and image {image!r} is not in the image map; give the container a "
                f"command, or map the image (`llmflow run --image-map MAP.yaml` with a line "
                f'`{image}: ["/path/to/entrypoint"]`, or .llmflow/images.yaml)'
            )
    return problems


def _git_problems(template: dict[str, Any], where: str) -> list[str]:
    """Git input artifacts the engine could not clone: off a pod, or with nowhere to go."""
    problems = []
    leaf = "container" in template or "script" in template
    for j, artifact in enumerate((template.get("inputs") or {}).get("artifacts") or []):
        git = artifact.get("git") if isinstance(artifact, dict) else None
        if not isinstance(git, dict):
            continue
        field = f"{where}.inputs.artifacts[{j}]"
        if not leaf:
            problems.append(
                f"{field}.git: git artifacts load only into a container or script template "
                f"locally, not into {template.get('name')!r}; move the git artifact to the "
                "inputs of the step that reads it"
            )
        if not git.get("repo"):
            problems.append(f"{field}.git.repo is required: the URL or path of the repository")
        if not artifact.get("path"):
            problems.append(f"{field}.path is required: where the clone goes in the container")
    return problems


def _walk(value: Any, shape: Any, path: str, problems: list[str]) -> None:
    if shape == LEAF:
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
        elif key in UNSUPPORTED:
            problems.append(f"{where}: {UNSUPPORTED[key]} are not supported locally")
        elif key not in IGNORED:
            problems.append(f"{where}: not supported")

"""A Workflow's spec joined with the WorkflowTemplate its `workflowTemplateRef` names.

A port of Argo's `JoinWorkflowSpec` and `MergeTo` (workflow/util/merge.go at v4.1), which the
controller's `setStoredWfSpec` (workflow/controller/operator.go) runs before anything else:

- the WorkflowTemplate's spec is the original and the Workflow's spec the patch of a
  Kubernetes strategic merge patch: mappings merge key by key, the Workflow's value winning;
  lists whose Go field has `patchMergeKey` (templates, arguments' parameters and artifacts,
  volumes, ...) merge item by item on that key, items only the Workflow has appended; any other
  list (steps, command, args, ...) is replaced whole by the Workflow's;
- `hooks` are not merged: the template's hooks are added where the Workflow has none of that
  name;
- `suspend` is always the Workflow's own (unset when it sets none);
- an argument parameter that has a value (`value`, `default` or `valueFrom`) is taken whole
  from the Workflow when the Workflow gives it a value, else whole from the template, so a
  Workflow's `value` never keeps the template's `enum` or `default`. Argument artifacts are
  the Workflow's; when both sides keep them in the same kind of location (`s3`, `git`, ...)
  the location's fields merge, the Workflow's winning (`mergeArtifactOverride`).

The Workflow's metadata is not merged (the controller only joins the controller's defaults
into it); it gains the label `workflows.argoproj.io/workflow-template: NAME`
(`cluster-workflow-template` for a ClusterWorkflowTemplate), as `setWfTemplateLabel` adds it.
"""

from __future__ import annotations

import copy
from typing import Any

#: List fields of WorkflowSpec, Template and the Kubernetes types in them that merge by a key
#: (their `patchMergeKey` tags); keyed by the field's JSON name.
MERGE_KEYS = {
    "templates": "name",
    "parameters": "name",
    "artifacts": "name",
    "tasks": "name",
    "volumes": "name",
    "initContainers": "name",
    "sidecars": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "tolerations": "key",
    "hostAliases": "ip",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}

#: Where an artifact can live (Argo's ArtifactLocation).
_LOCATIONS = ("s3", "git", "http", "artifactory", "hdfs", "raw", "oss", "gcs", "azure", "plugin")

TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
CLUSTER_TEMPLATE_LABEL = "workflows.argoproj.io/cluster-workflow-template"


def join_workflow_spec(
    workflow_spec: dict[str, Any], template_spec: dict[str, Any]
) -> dict[str, Any]:
    """The spec Argo runs for a Workflow with a `workflowTemplateRef` (`JoinWorkflowSpec`).

    Args:
        workflow_spec: The Workflow's own spec (it keeps its `workflowTemplateRef`).
        template_spec: The referenced WorkflowTemplate's spec.
    """
    patch = {k: v for k, v in workflow_spec.items() if k != "hooks"}
    original = {k: v for k, v in template_spec.items() if k != "hooks"}
    merged: dict[str, Any] = strategic_merge(original, patch, field="")
    hooks = dict(workflow_spec.get("hooks") or {})
    for name, hook in (template_spec.get("hooks") or {}).items():
        hooks.setdefault(name, copy.deepcopy(hook))
    if hooks:
        merged["hooks"] = hooks
    if workflow_spec.get("suspend") is None:
        merged.pop("suspend", None)
    else:
        merged["suspend"] = workflow_spec["suspend"]
    arguments = merged.get("arguments")
    if isinstance(arguments, dict):
        _prefer_whole_parameters(arguments, workflow_spec, template_spec)
        _prefer_workflow_artifacts(arguments, workflow_spec, template_spec)
    return merged


def template_label(reference: dict[str, Any]) -> tuple[str, str]:
    """The label `setWfTemplateLabel` puts on a Workflow that has this `workflowTemplateRef`."""
    key = CLUSTER_TEMPLATE_LABEL if reference.get("clusterScope") else TEMPLATE_LABEL
    return key, str(reference.get("name", ""))


def strategic_merge(original: Any, patch: Any, field: str) -> Any:
    """A Kubernetes strategic merge of `patch` onto `original`; neither is changed.

    Args:
        original: The lower-priority value (the WorkflowTemplate's).
        patch: The higher-priority value (the Workflow's).
        field: The JSON name of the field both are the value of; it picks a list's merge key.
    """
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None or value == "" or value == []:
                continue  # Go drops empty fields (`omitempty`) before it merges: no override
            if key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    key = MERGE_KEYS.get(field)
    if key is not None and isinstance(original, list) and isinstance(patch, list):
        return _merge_by_key(original, patch, key)
    return copy.deepcopy(patch)


def _merge_by_key(original: list[Any], patch: list[Any], key: str) -> list[Any]:
    """Items of both lists: the original's order, same-key items merged, new ones appended."""
    merged = copy.deepcopy(original)
    index = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for item in patch:
        at = index.get(item.get(key)) if isinstance(item, dict) else None
        if at is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[at] = strategic_merge(merged[at], item, "")
    return merged


def _has_value(parameter: Any) -> bool:
    """Argo's `Parameter.HasValue`: a value, a default or a valueFrom."""
    return isinstance(parameter, dict) and any(
        parameter.get(k) is not None for k in ("value", "default", "valueFrom")
    )


def _named(spec: dict[str, Any], kind: str, valued: bool) -> dict[str, Any]:
    items = (spec.get("arguments") or {}).get(kind) or []
    return {
        str(item.get("name")): item
        for item in items
        if isinstance(item, dict) and (not valued or _has_value(item))
    }


def _prefer_whole_parameters(
    arguments: dict[str, Any], workflow_spec: dict[str, Any], template_spec: dict[str, Any]
) -> None:
    ours, theirs = (_named(s, "parameters", True) for s in (workflow_spec, template_spec))
    params = arguments.get("parameters") or []
    for i, param in enumerate(params):
        if not _has_value(param):
            continue
        source = ours.get(str(param.get("name"))) or theirs.get(str(param.get("name")))
        if source is not None:
            params[i] = copy.deepcopy(source)


def _prefer_workflow_artifacts(
    arguments: dict[str, Any], workflow_spec: dict[str, Any], template_spec: dict[str, Any]
) -> None:
    ours, theirs = (_named(s, "artifacts", False) for s in (workflow_spec, template_spec))
    artifacts = arguments.get("artifacts") or []
    for i, artifact in enumerate(artifacts):
        name = str(artifact.get("name"))
        override = ours.get(name) or theirs.get(name)
        if override is not None:
            artifacts[i] = _artifact_override(artifact, override)


def _artifact_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`mergeArtifactOverride`: the override, on top of the base's location of the same kind.

    When both keep the artifact in the same kind of location (both `s3`, say), the location's
    fields merge, the override's winning; otherwise the override replaces the base whole.
    """
    merged = copy.deepcopy(override)
    kinds = (
        [k for k in _LOCATIONS if base.get(k) is not None],
        [k for k in _LOCATIONS if override.get(k) is not None],
    )
    if len(kinds[0]) == 1 and kinds[0] == kinds[1]:
        kind = kinds[0][0]
        merged[kind] = strategic_merge(base[kind], override[kind], kind)
    return merged

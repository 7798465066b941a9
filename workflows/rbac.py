"""Least-privilege RBAC for each pipeline, derived from its rendered Workflows.

A pipeline's service account may do exactly what its resource templates make Argo's executor
do, and nothing else, so the Roles are computed from the compiled Workflows, never written by
hand. The executor runs `kubectl <action> -f manifest.yaml` in-process
(argo-workflows `workflow/executor/resource.go`, `getKubectlArguments`); what each action asks
of the API server comes from kubectl itself (kubernetes/kubectl `pkg/cmd/...`):

- `create`: `create` (POST).
- `apply`: client-side apply reads the live object (`info.Get()`: `get`), creates it when
  absent (`helper.Create`: `create`), else sends a three-way merge patch (`patch`).
- `patch`: `patch` on the object named in the manifest (read from the file, not fetched).
- `replace`: `get` (the live resourceVersion, `Helper.Replace` with overwrite) and `update` (PUT).
- `delete`: `delete`, then kubectl's default `--wait` watches the object disappear
  (`cmd/wait.IsDeleted`: `get`, then `list` and `watch` with a `metadata.name` field selector);
  without them kubectl skips the wait silently and the step ends before finalizers have run.
- `get`: `get`.

A `successCondition` or `failureCondition` is polled with a GET of the object
(`checkResourceState`), and output parameters with `jsonPath`/`jqFilter` run `kubectl get`
(`SaveResourceParameters`): both add `get`. `setOwnerReference` is filled in by the controller
before the executor runs (`operator.go`, executeResource: a controller reference with
blockOwnerDeletion), but the object is still created by the pipeline's account, and where the
OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift enables it) setting
blockOwnerDeletion needs `update` on the owner's `finalizers` subresource: so such a template
adds `workflows/finalizers` `update`, and nothing else of the Workflow. Every pipeline's pods
also report their outputs as WorkflowTaskResults (`workflow/executor/taskresult.go`: Create,
then Patch), Argo's documented minimum for the executor (`docs/workflow-rbac.md`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from workflows.exceptions import LLMFlowError
from workflows.manifest_text import quote_placeholders

#: The API verbs kubectl issues for each Argo resource `action` (see the module docstring).
ACTION_VERBS: dict[str, frozenset[str]] = {
    "create": frozenset({"create"}),
    "apply": frozenset({"get", "create", "patch"}),
    "patch": frozenset({"patch"}),
    "replace": frozenset({"get", "update"}),
    "delete": frozenset({"delete", "get", "list", "watch"}),
    "get": frozenset({"get"}),
}

#: What polling a success/failure condition, or reading an output parameter, needs.
READ_VERBS = frozenset({"get"})

#: What creating an object owned by the Workflow (`setOwnerReference`) may need of it.
OWNER_FINALIZERS = ("argoproj.io", "workflows/finalizers")

#: The executor's own need in every pipeline: reporting outputs as WorkflowTaskResults.
EXECUTOR_RULE: dict[str, list[str]] = {
    "apiGroups": ["argoproj.io"],
    "resources": ["workflowtaskresults"],
    "verbs": ["create", "patch"],
}

#: (API group, kind) -> resource (plural, lower-case), for the kinds our pipelines manage.
RESOURCES: dict[tuple[str, str], str] = {
    ("", "ConfigMap"): "configmaps",
    ("", "Secret"): "secrets",
    ("", "Service"): "services",
    ("apps", "Deployment"): "deployments",
    ("autoscaling", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("gateway.networking.k8s.io", "HTTPRoute"): "httproutes",
    ("monitoring.coreos.com", "ServiceMonitor"): "servicemonitors",
    ("kubeflow.org", "PyTorchJob"): "pytorchjobs",
    ("trainer.kubeflow.org", "TrainJob"): "trainjobs",
}


class RBACError(LLMFlowError):
    """A resource template whose permissions cannot be derived (unknown kind, action...)."""


def api_group(api_version: str) -> str:
    """The API group of an apiVersion: `apps/v1` -> `apps`, `v1` -> `` (the core group)."""
    group, sep, _ = api_version.rpartition("/")
    return group if sep else ""


def resource_of(api_version: str, kind: str) -> tuple[str, str]:
    """(API group, plural resource) of a kind.

    Raises:
        RBACError: the kind is not in `RESOURCES`, naming it and the fix.
    """
    group = api_group(api_version)
    try:
        return group, RESOURCES[(group, kind)]
    except KeyError:
        raise RBACError(
            f"no resource name known for kind {kind!r} of {api_version!r}: add it to "
            "workflows.rbac.RESOURCES (its plural, as `kubectl api-resources` lists it)"
        ) from None


def template_verbs(template: Mapping[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """What one resource template needs: {(API group, resource): verbs}; {} for other templates.

    Raises:
        RBACError: the template's action, manifest or kind cannot be turned into permissions.
    """
    resource = template.get("resource")
    if resource is None:
        return {}
    where = f"template {template.get('name', '?')!r}"
    action = resource.get("action")
    if action not in ACTION_VERBS:
        raise RBACError(f"{where}: action {action!r} is not one of {', '.join(ACTION_VERBS)}")
    if "manifest" not in resource or resource.get("flags"):
        raise RBACError(
            f"{where}: only inline `manifest` resource templates without `flags` can be "
            "checked; give the object as `manifest`"
        )
    manifest = yaml.safe_load(quote_placeholders(resource["manifest"]))
    if not isinstance(manifest, dict) or not manifest.get("apiVersion") or not manifest.get("kind"):
        raise RBACError(f"{where}: the manifest needs apiVersion and kind")
    if "{{" in f"{manifest['apiVersion']}{manifest['kind']}":
        raise RBACError(f"{where}: apiVersion and kind must be literal, not Argo expressions")
    verbs = set(ACTION_VERBS[action])
    reads_outputs = any(
        "jsonPath" in (p.get("valueFrom") or {}) or "jqFilter" in (p.get("valueFrom") or {})
        for p in (template.get("outputs") or {}).get("parameters", [])
    )
    if resource.get("successCondition") or resource.get("failureCondition") or reads_outputs:
        verbs |= READ_VERBS
    needed = {resource_of(manifest["apiVersion"], manifest["kind"]): frozenset(verbs)}
    if resource.get("setOwnerReference"):
        needed[OWNER_FINALIZERS] = frozenset({"update"})
    return needed


def role_rules(workflows: Iterable[Mapping[str, Any]]) -> list[dict[str, list[str]]]:
    """The Role rules that let the given Workflows (of one pipeline) run, and nothing more.

    One rule per (API group, resource), verbs sorted, rules sorted by group and resource,
    after the executor's `workflowtaskresults` rule.

    Raises:
        RBACError: a resource template's permissions cannot be derived.
    """
    needed: dict[tuple[str, str], set[str]] = {}
    for workflow in workflows:
        for template in workflow.get("spec", {}).get("templates", []):
            for key, verbs in template_verbs(template).items():
                needed.setdefault(key, set()).update(verbs)
    rules = [dict(EXECUTOR_RULE)]
    rules.extend(
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(needed[(group, resource)])}
        for group, resource in sorted(needed)
    )
    return rules


def pipeline_rules(
    rendered: Mapping[str, Iterable[Mapping[str, Any]]],
) -> dict[str, list[dict[str, list[str]]]]:
    """Role rules per pipeline, from each pipeline's rendered Workflows (one per spec).

    Raises:
        RBACError: a resource template's permissions cannot be derived.
    """
    return {name: role_rules(workflows) for name, workflows in sorted(rendered.items())}


def rbac_objects(
    account: str, namespace: str, rules: list[dict[str, list[str]]] | None
) -> list[dict[str, Any]]:
    """ServiceAccount, and with rules a Role and RoleBinding of the same name.

    Args:
        account: The service account's name (`llmflow-deploy`).
        namespace: Where the account, Role and binding live.
        rules: The Role's rules; None for an account bound to nothing (serving, training).
    """
    metadata = {
        "name": account,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "llmflow"},
    }
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(metadata)}
    ]
    if rules is None:
        return objects
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(metadata),
            "rules": rules,
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(metadata),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        }
    )
    return objects

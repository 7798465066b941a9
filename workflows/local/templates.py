"""LocalTemplates: the WorkflowTemplates a local run's `templateRef`s resolve against.

On a cluster, `templateRef` and `workflowTemplateRef` name WorkflowTemplates that were applied
to the namespace beforehand (`kubectl apply -f`, `argo template create`); the controller reads
them when the Workflow runs. Locally they live as YAML files under the llmflow folder, one per
template, where `llmflow templates apply --local` writes them:

    <root>/platform/workflowtemplates/<namespace>/<name>.yaml
    <root>/platform/clusterworkflowtemplates/<name>.yaml

Every write goes to a temporary file that then replaces the old one, so a run that loads a
template while it is being applied sees the old or the new one, never half a file.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from workflows.exceptions import LLMFlowError

Manifest = dict[str, Any]

WORKFLOW_TEMPLATE = "WorkflowTemplate"
CLUSTER_WORKFLOW_TEMPLATE = "ClusterWorkflowTemplate"

#: Kubernetes object names (DNS-1123 subdomains); also what keeps a name a plain file name.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
#: Namespaces are DNS-1123 labels.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class LocalTemplates:
    """WorkflowTemplates and ClusterWorkflowTemplates kept as YAML files under `root`.

    Args:
        root: The llmflow folder (`.llmflow`), the same one `llmflow run --root` uses.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / "platform" / "workflowtemplates"
        self.cluster_folder = self.root / "platform" / "clusterworkflowtemplates"

    # --- writing ---------------------------------------------------------------------------

    def apply(self, manifest: dict[str, Any]) -> str:
        """Create or replace a WorkflowTemplate (or ClusterWorkflowTemplate), as `kubectl apply`.

        The stored copy carries its namespace (`default` when the manifest gives none), as the
        API server stores it; a ClusterWorkflowTemplate has none.

        Returns:
            What kubectl prints: `workflowtemplate.argoproj.io/NAME created` or `configured`.

        Raises:
            LLMFlowError: the manifest is no WorkflowTemplate, or its name or spec is unusable.
        """
        if not isinstance(manifest, dict):
            raise LLMFlowError(
                f"not a WorkflowTemplate: a YAML mapping is needed, got {type(manifest).__name__}"
            )
        kind = manifest.get("kind")
        if kind not in (WORKFLOW_TEMPLATE, CLUSTER_WORKFLOW_TEMPLATE):
            raise LLMFlowError(
                f"kind {kind!r}: only {WORKFLOW_TEMPLATE} and {CLUSTER_WORKFLOW_TEMPLATE} are "
                "stored as templates; apply Workflows with `llmflow run --file`"
            )
        meta = manifest.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            hint = " (generateName is not enough: templates are found by name)"
            raise LLMFlowError(
                f"{kind} metadata.name is required{hint if meta.get('generateName') else ''}"
            )
        _check_name(f"{kind} metadata.name", name, _NAME, 253)
        spec = manifest.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("templates", []), list):
            raise LLMFlowError(
                f"{kind} {name!r}: spec must be a mapping whose templates is a list, "
                f"got spec {spec!r:.80}"
            )
        stored = copy.deepcopy(manifest)
        stored["metadata"] = dict(meta)
        if kind == WORKFLOW_TEMPLATE:
            namespace = meta.get("namespace") or "default"
            _check_name(f"{kind} {name!r} metadata.namespace", namespace, _NAMESPACE, 63)
            stored["metadata"]["namespace"] = namespace
            path = self._path(namespace, name)
        else:
            stored["metadata"].pop("namespace", None)
            path = self._cluster_path(name)
        existed = path.exists()
        _write_atomically(path, yaml.safe_dump(stored, sort_keys=False))
        return f"{kind.lower()}.argoproj.io/{name} {'configured' if existed else 'created'}"

    def delete(self, namespace: str, name: str, *, cluster: bool = False) -> bool:
        """Remove a template; returns whether there was one.

        Args:
            namespace: The WorkflowTemplate's namespace (ignored with `cluster`).
            name: The template's metadata.name.
            cluster: Remove the ClusterWorkflowTemplate `name` instead.
        """
        path = self._locate(namespace, name, cluster)
        if path is None or not path.exists():
            return False
        path.unlink()
        return True

    # --- reading ---------------------------------------------------------------------------

    def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        """The stored template, or None when there is none of that name.

        Args:
            namespace: The WorkflowTemplate's namespace (ignored with `cluster`).
            name: The template's metadata.name.
            cluster: Get the ClusterWorkflowTemplate `name` instead.

        Raises:
            LLMFlowError: the stored file is no longer a readable template (edited by hand).
        """
        path = self._locate(namespace, name, cluster)
        if path is None:
            return None
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return _parse(path, text)

    def list(self, namespace: str | None = None, *, cluster: bool = False) -> list[dict[str, Any]]:
        """Stored templates sorted by namespace and name.

        Args:
            namespace: Only this namespace's WorkflowTemplates; None for every namespace.
            cluster: List the ClusterWorkflowTemplates instead.
        """
        if cluster:
            paths = sorted(self.cluster_folder.glob("*.yaml"))
        elif namespace is None:
            paths = sorted(self.folder.glob("*/*.yaml"))
        else:
            paths = sorted((self.folder / namespace).glob("*.yaml"))
        return [_parse(path, path.read_text()) for path in paths]

    # --- paths -----------------------------------------------------------------------------

    def _path(self, namespace: str, name: str) -> Path:
        return self.folder / namespace / f"{name}.yaml"

    def _cluster_path(self, name: str) -> Path:
        return self.cluster_folder / f"{name}.yaml"

    def _locate(self, namespace: str, name: str, cluster: bool) -> Path | None:
        """The file of a template; None for a name no template can have (`..`, `a/b`)."""
        if not _NAME.fullmatch(name or ""):
            return None
        if cluster:
            return self._cluster_path(name)
        if not _NAMESPACE.fullmatch(namespace or ""):
            return None
        return self._path(namespace, name)


def _check_name(field: str, value: Any, pattern: re.Pattern[str], limit: int) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > limit:
        raise LLMFlowError(
            f"{field} {value!r} is not a valid Kubernetes name: lower-case letters, digits and "
            f"'-', starting and ending with a letter or digit, at most {limit} characters"
        )


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LLMFlowError(f"{path}: not valid YAML ({exc}); apply the template again") from None
    if not isinstance(data, dict):
        raise LLMFlowError(f"{path}: not a WorkflowTemplate; apply the template again")
    return data


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

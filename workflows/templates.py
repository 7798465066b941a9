"""Pipelines as Argo WorkflowTemplates: what the Argo UI, the CLI, schedules and tags all start.

The template carries the rendered Workflow's spec unchanged (parameters with their
descriptions and enums are the UI's form); it is named after the pipeline, so one template
per pipeline and namespace. Every trigger submits a Workflow that only references it
(`workflowTemplateRef`) with the parameters it overrides, so a run started from the UI, by
`llmflow submit`, by a CronWorkflow or by a git tag is the same run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from workflows.exceptions import SpecError
from workflows.spec import ReleaseSpec

#: Annotation holding the digest of a template's spec as rendered: what `submit` compares
#: with the server's copy, which the server may return normalised (empty fields filled in).
DIGEST_ANNOTATION = "llmflow.io/template-digest"


def template_digest(spec: dict[str, Any]) -> str:
    """The digest of a template's spec (canonical JSON)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def workflow_template(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    """The WorkflowTemplate `name` with the Workflow's spec, namespace and labels.

    Args:
        workflow: A rendered Workflow (`workflows.render.render`).
        name: The template's name; the pipeline's name (`fetch-weights`).
    """
    source = workflow.get("metadata", {})
    metadata: dict[str, Any] = {"name": name}
    for key in ("namespace", "labels", "annotations"):
        if source.get(key):
            metadata[key] = copy.deepcopy(source[key])
    metadata.setdefault("annotations", {})[DIGEST_ANNOTATION] = template_digest(workflow["spec"])
    return {
        "apiVersion": workflow.get("apiVersion", "argoproj.io/v1alpha1"),
        "kind": "WorkflowTemplate",
        "metadata": metadata,
        "spec": copy.deepcopy(workflow["spec"]),
    }


def pipeline_templates(spec: ReleaseSpec) -> dict[str, dict[str, Any]]:
    """Every pipeline the spec can run, as its WorkflowTemplate, by name.

    A pipeline whose section the spec lacks (no `serving`: no `deploy`) is left out, as is
    one composed of a left-out pipeline.
    """
    from workflows.pipelines import discover

    templates = {}
    for name, pipeline in discover().items():
        try:
            workflow = pipeline.build(spec).to_dict()
        except SpecError:
            continue
        templates[name] = workflow_template(workflow, name)
    return dict(sorted(templates.items(), key=lambda item: _depth(item[0], templates)))


def _depth(name: str, templates: dict[str, dict[str, Any]]) -> int:
    """How deep a template's references go: the apply order puts those referenced first.

    The Argo server checks a WorkflowTemplate's `templateRef`s when it is created.
    """
    refs = referenced_templates(templates[name]) & set(templates)
    return 1 + max(_depth(r, templates) for r in refs) if refs else 0


def referenced_templates(manifest: dict[str, Any]) -> set[str]:
    """The WorkflowTemplates a Workflow or template names (`templateRef`, `workflowTemplateRef`)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("templateRef", "workflowTemplateRef"):
                ref = node.get(key)
                if isinstance(ref, dict) and ref.get("name") and not ref.get("clusterScope"):
                    names.add(ref["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(manifest.get("spec", {}))
    return names


def template_workflow(
    template: dict[str, Any], parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Workflow that runs a WorkflowTemplate (`workflowTemplateRef`), as the Argo UI submits it.

    Only the overridden parameters are arguments; the rest keep the template's values, so
    the run is the template's whatever started it.

    Raises:
        SpecError: a parameter the template does not declare, or a value outside its enum,
            naming the template's parameters.
    """
    name = template["metadata"]["name"]
    declared = {
        p["name"]: p for p in (template["spec"].get("arguments") or {}).get("parameters") or []
    }
    arguments = []
    for key, value in (parameters or {}).items():
        if key not in declared:
            raise SpecError(
                f"parameter {key!r}: the {name} template has no such parameter; "
                f"its parameters: {', '.join(declared) or 'none'}"
            )
        enum = declared[key].get("enum")
        if enum and str(value) not in [str(e) for e in enum]:
            raise SpecError(f"parameter {key} = {value!r}: must be one of {', '.join(enum)}")
        arguments.append({"name": key, "value": str(value)})
    meta = template["metadata"]
    metadata: dict[str, Any] = {"generateName": f"{name}-"}
    prefix = (meta.get("labels") or {}).get("llmflow.io/model")
    if prefix:
        metadata["generateName"] = f"{name}-{prefix}-"
    for key in ("namespace", "labels"):
        if meta.get(key):
            metadata[key] = copy.deepcopy(meta[key])
    spec: dict[str, Any] = {"workflowTemplateRef": {"name": name}}
    if arguments:
        spec["arguments"] = {"parameters": arguments}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec,
    }


def with_references(
    names: Iterable[str], template_of: Callable[[str], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The named templates and every template they reference, transitively, by name.

    Args:
        names: Where to start (a pipeline; the templates a Workflow references).
        template_of: The WorkflowTemplate of a name (rendered, or looked up).
    """
    found: dict[str, dict[str, Any]] = {}
    todo = sorted(names)
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = template_of(name)
            todo.extend(sorted(referenced_templates(found[name])))
    return found

"""A rendered Workflow as an Argo WorkflowTemplate: what the Argo UI and schedules start.

The template carries the Workflow's spec unchanged (parameters with their descriptions and
enums are the UI's form); it is named after the pipeline, so one template per pipeline and
namespace, and every trigger submits the same definition.
"""

from __future__ import annotations

import copy
from typing import Any


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
    return {
        "apiVersion": workflow.get("apiVersion", "argoproj.io/v1alpha1"),
        "kind": "WorkflowTemplate",
        "metadata": metadata,
        "spec": copy.deepcopy(workflow["spec"]),
    }

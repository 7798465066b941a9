"""CronWorkflows from the spec's `schedules`: a pipeline's WorkflowTemplate on a timetable.

A CronWorkflow's `workflowSpec` only references the template (`workflowTemplateRef`) with the
parameters the schedule overrides, so a scheduled run is the run the Argo UI or `llmflow
submit` would start. `llmflow run --from cronwf/NAME` runs one instance now, as `argo submit
--from cronwf/NAME` does (`common.ConvertCronWorkflowToWorkflow`: generateName `<name>-`, the
label naming the CronWorkflow, the scheduled-time annotation).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from workflows.exceptions import SpecError
from workflows.spec import ReleaseSpec
from workflows.templates import template_workflow

#: Label Argo puts on a CronWorkflow's runs (`LabelKeyCronWorkflow`).
CRON_LABEL = "workflows.argoproj.io/cron-workflow"

#: Label of the controller instance a CronWorkflow belongs to (`LabelKeyControllerInstanceID`).
INSTANCE_LABEL = "workflows.argoproj.io/controller-instanceid"

#: Annotation with the run's scheduled time (`AnnotationKeyCronWfScheduledTime`).
SCHEDULED_TIME = "workflows.argoproj.io/scheduled-time"


def cron_workflows(spec: ReleaseSpec, templates: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The spec's schedules as CronWorkflows.

    Args:
        spec: The release spec.
        templates: The spec's WorkflowTemplates by name (`templates.pipeline_templates`).

    Raises:
        SpecError: a schedule names a pipeline the spec does not render, or a parameter its
            template lacks, naming `schedules[i]`.
    """
    objects = []
    for index, schedule in enumerate(spec.schedules):
        where = f"schedules[{index}] ({schedule.name})"
        template = templates.get(schedule.pipeline)
        if template is None:
            raise SpecError(
                f"{where}.pipeline = {schedule.pipeline!r}: no such pipeline for this spec; "
                f"pipelines: {', '.join(templates)}"
            )
        try:
            workflow = template_workflow(template, schedule.parameters)
        except SpecError as exc:
            raise SpecError(f"{where}.parameters: {exc}") from None
        labels = {
            **(template["metadata"].get("labels") or {}),
            "llmflow.io/schedule": schedule.name,
        }
        objects.append(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "CronWorkflow",
                "metadata": {"name": schedule.name, "namespace": spec.namespace, "labels": labels},
                "spec": {
                    "schedules": [schedule.cron],
                    "timezone": schedule.timezone,
                    "concurrencyPolicy": "Forbid",
                    "startingDeadlineSeconds": schedule.starting_deadline_seconds,
                    "successfulJobsHistoryLimit": schedule.history,
                    "failedJobsHistoryLimit": schedule.history,
                    "suspend": schedule.suspend,
                    "workflowMetadata": {"labels": dict(labels)},
                    "workflowSpec": workflow["spec"],
                },
            }
        )
    return objects


def workflow_from_cron(cron: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """One run of a CronWorkflow, now, as `argo submit --from cronwf/NAME` makes it."""
    name = cron["metadata"]["name"]
    spec = cron["spec"]
    meta = spec.get("workflowMetadata") or {}
    labels = {CRON_LABEL: name}
    instance = (cron["metadata"].get("labels") or {}).get(INSTANCE_LABEL)
    if instance:
        labels[INSTANCE_LABEL] = instance
    labels.update(meta.get("labels") or {})
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata: dict[str, Any] = {
        "generateName": f"{name}-",
        "labels": labels,
        "annotations": {SCHEDULED_TIME: when, **(meta.get("annotations") or {})},
    }
    if cron["metadata"].get("namespace"):
        metadata["namespace"] = cron["metadata"]["namespace"]
    return {
        "apiVersion": cron.get("apiVersion", "argoproj.io/v1alpha1"),
        "kind": "Workflow",
        "metadata": metadata,
        "spec": copy.deepcopy(spec["workflowSpec"]),
    }

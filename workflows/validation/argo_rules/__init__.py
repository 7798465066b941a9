"""Argo's semantic checks of Workflows: what `argo lint` rejects although the schema passes.

A port of `workflow/validate/validate.go` (argoproj/argo-workflows at f016ad89eb) and of the
parts of `workflow/common` it calls: ProcessArgs and its `{{...}}` substitution, DAG dependency
parsing and sorting. Messages are worded and nested exactly as Argo's, e.g.
"templates.main.steps[1].a templates.echo inputs.parameters.message was not supplied".

Argo stops at the first problem; this goes on, so the first message is the one `argo lint`
prints and the others are what it would print next, once the earlier ones are fixed. Checked as
`argo lint` does (Opts{Lint: true}): spec.arguments may leave values to submission time.

A `templateRef` is checked inside the WorkflowTemplate it names when the caller passes a
lookup that finds it (the local engine does, with the templates it loaded); without one, a
node that uses it is taken on trust. A Workflow with a `workflowTemplateRef` is only checked
for what `WorkflowTemplateRefFields` refuses (templates of its own): its other rules apply to
the spec joined with the template.

Left out: executor plugins, cron schedules, podGC, pod resources and resource claims, metrics,
artifact locations and archive settings, output valueFrom rules, timeouts, and the leaf checks
of images, volume mounts and init containers.
"""

from __future__ import annotations

from typing import Any

from workflows.validation.argo_rules._names import name_length
from workflows.validation.argo_rules._validator import TemplateLookup, Validator
from workflows.validation.argo_rules._yaml import as_dict, as_str

__all__ = ["TemplateLookup", "workflow_problems"]


def workflow_problems(workflow: dict[str, Any], lookup: TemplateLookup | None = None) -> list[str]:
    """Argo's validation problems of a Workflow, WorkflowTemplate or CronWorkflow.

    Args:
        workflow: The object as loaded from YAML. Its `kind` picks Argo's rules: a
            WorkflowTemplate may omit the entrypoint and leave workflow parameters to the
            Workflow that uses it; a CronWorkflow is checked as the Workflow it creates.
        lookup: Finds the WorkflowTemplate a `templateRef` names (`name`, `clusterScope`), so
            the referenced template is checked as Argo's `validateTemplateHolder` does:
            "template reference NAME.TEMPLATE not found" when it is missing, its inputs and
            body otherwise. None takes templateRefs on trust.

    Returns:
        [] when Argo accepts it; else one message per problem, in Argo's words.
    """
    kind = workflow.get("kind") or "Workflow"
    meta, spec = as_dict(workflow.get("metadata")), as_dict(workflow.get("spec"))
    name = as_str(meta.get("name"))
    if kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        what = "cluster workflow template" if kind.startswith("Cluster") else "workflow template"
        optional_entrypoint = not as_str(spec.get("entrypoint"))
        validator = Validator(
            meta, spec, template=True, optional_entrypoint=optional_entrypoint, lookup=lookup
        )
        return name_length(what, name, 63) + validator.run()
    if kind == "CronWorkflow":
        created = as_dict(spec.get("workflowMetadata"))
        meta = {
            "labels": {
                "workflows.argoproj.io/cron-workflow": name,
                **as_dict(created.get("labels")),
            },
            "annotations": {
                "workflows.argoproj.io/scheduled-time": "",
                **as_dict(created.get("annotations")),
            },
        }
        inner = Validator(meta, as_dict(spec.get("workflowSpec")), lint=False, lookup=lookup).run()
        return name_length("cron workflow", name, 52) + [
            f"cannot validate Workflow: {problem}" for problem in inner
        ]
    return name_length("workflow", name, 63) + Validator(meta, spec, lookup=lookup).run()

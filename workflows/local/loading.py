"""What loading a Workflow does before anything runs: join, resolve, lint, check support.

In the controller's order (`setExecWorkflow`, workflow/controller/operator.go): a
`workflowTemplateRef` is joined with its WorkflowTemplate first (merge.py), then the result is
validated. Every `templateRef` is resolved here (refs.py), so nothing missing is found only
once steps have run, and the templates the references reach are held to the same `argo lint`
rules and the same support checks as the Workflow's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflows.exceptions import InvalidWorkflow
from workflows.local.refs import LOCAL, Holder, Resolver, expand
from workflows.local.support import check_supported
from workflows.local.templates import LocalTemplates
from workflows.validation.argo_rules import workflow_problems


def load(
    workflow: dict[str, Any],
    name: str,
    namespace: str,
    store: LocalTemplates,
    images: Mapping[str, list[str]],
) -> tuple[dict[str, Any], Resolver]:
    """The Workflow as it runs, and the resolver of its calls.

    Args:
        workflow: The Workflow as loaded from YAML.
        name: The run's name (the Workflow's, or one made from its generateName).
        namespace: The Workflow's namespace: its references name WorkflowTemplates there.
        store: Where the WorkflowTemplates are.
        images: The image map (a container without a command needs its image in it).

    Raises:
        InvalidWorkflow: `argo lint` would refuse it, or a template it reaches.
        RunError: a WorkflowTemplate or a template it names is missing.
        UnsupportedFeature: it, or a template it reaches, uses what the engine does not run.
    """
    spec = workflow.get("spec") or {}
    by_reference = isinstance(spec.get("workflowTemplateRef"), dict)
    if by_reference:
        problems = workflow_problems(workflow)  # e.g. templates beside the reference
        if problems:
            raise InvalidWorkflow(problems)
        workflow = expand(workflow, store, namespace)
        spec = workflow["spec"]
    templates = [t for t in spec.get("templates") or [] if isinstance(t, dict)]
    # The controller's template base for a joined spec is a Workflow with no name.
    local = Holder(LOCAL, "" if by_reference else name, {str(t.get("name")): t for t in templates})
    resolver = Resolver(local, store, namespace)
    resolver.load()
    linted = {**workflow, "spec": {k: v for k, v in spec.items() if k != "workflowTemplateRef"}}
    problems = workflow_problems(linted, resolver.lookup)
    if problems:
        raise InvalidWorkflow(problems)
    check_supported(workflow, images, resolver.referenced)
    return workflow, resolver

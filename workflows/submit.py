"""Submit a pipeline to an Argo server: a Workflow that references the pipeline's template.

Everything is validated strictly first: a bad spec or a broken template fails here, with
the field named, before anything reaches the cluster. Connection settings follow the `argo`
CLI's environment variables so an existing setup works unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.argo_client import ArgoClient
from workflows.exceptions import SubmitError, ValidationFailed
from workflows.pipelines import get_pipeline
from workflows.spec import ReleaseSpec
from workflows.templates import (
    DIGEST_ANNOTATION,
    pipeline_templates,
    template_digest,
    template_workflow,
    with_references,
)
from workflows.validation import SchemaRegistry, validate_documents

Manifest = dict[str, Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArgoServer:
    """Where and how to reach the Argo server.

    Attributes:
        host: Base URL, e.g. https://argo.example.com:2746 (env ARGO_SERVER; `host:port` is
            taken as https).
        token: Bearer token (env ARGO_TOKEN); never logged.
        namespace: Overrides the spec's namespace (env ARGO_NAMESPACE).
        verify_tls: False to accept self-signed certificates (env ARGO_INSECURE_SKIP_VERIFY).
    """

    host: str
    token: str | None = field(default=None, repr=False)  # never printed
    namespace: str | None = None
    verify_tls: bool = True

    @classmethod
    def from_env(
        cls,
        host: str | None = None,
        token: str | None = None,
        namespace: str | None = None,
        insecure: bool | None = None,
    ) -> ArgoServer:
        """Settings from arguments, falling back to the argo CLI's environment variables.

        Raises:
            SubmitError: no server given.
        """
        host = host or os.environ.get("ARGO_SERVER")
        if not host:
            raise SubmitError(
                "no Argo server given; pass --host https://argo.example.com:2746 or set "
                "ARGO_SERVER (e.g. after `kubectl -n argo port-forward svc/argo-server 2746`)"
            )
        if "://" not in host:
            host = f"https://{host}"
        if insecure is None:
            insecure = os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() in {"1", "true"}
        return cls(
            host=host.rstrip("/"),
            token=token or os.environ.get("ARGO_TOKEN") or None,
            namespace=namespace or os.environ.get("ARGO_NAMESPACE") or None,
            verify_tls=not insecure,
        )

    def client(self) -> ArgoClient:
        """The REST client for this server."""
        return ArgoClient(self.host, self.token, self.verify_tls)


def submit(
    pipeline: str,
    spec: ReleaseSpec,
    server: ArgoServer,
    parameters: Mapping[str, str] | None = None,
    apply_templates: bool = False,
) -> str:
    """Run a pipeline's WorkflowTemplate on an Argo server; returns the created workflow's name.

    The Workflow only references the template (`workflowTemplateRef`) with the overridden
    parameters, as a run from the Argo UI does. The template on the server must be what the
    spec renders (or `apply_templates` puts it there first): a stale template would run
    something other than the spec says.

    Raises:
        ValidationFailed: a rendered template or the Workflow does not pass strict validation.
        SpecError: a parameter the template does not declare, or a value outside its enum.
        SubmitError: the server is unreachable, lacks the template, or refused the workflow.
    """
    namespace = server.namespace or spec.namespace
    needed = needed_templates(pipeline, spec, namespace)
    client = server.client()
    for name, template in needed.items():
        if apply_templates:
            client.apply(template, namespace)
            continue
        current = client.get("WorkflowTemplate", namespace, name)
        if current is None:
            raise SubmitError(
                f"the Argo server at {server.host} has no WorkflowTemplate {name!r} in namespace "
                f"{namespace}; apply the templates first: `llmflow templates apply -f SPEC` "
                "(or submit with --apply-templates)"
            )
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if annotations.get(DIGEST_ANNOTATION) != template_digest(template["spec"]):
            raise SubmitError(
                f"the WorkflowTemplate {name!r} in namespace {namespace} differs from what the "
                "spec renders; apply it again (`llmflow templates apply -f SPEC`, or submit with "
                "--apply-templates) so that the run is the spec's"
            )
    workflow = template_workflow(needed[pipeline], parameters)
    _check([(f"{pipeline} (Workflow)", workflow)])
    created = client.create(workflow, namespace)
    created_name = (created.get("metadata") or {}).get("name")
    if not created_name:
        raise SubmitError(f"the Argo server at {server.host} answered without a workflow name")
    return str(created_name)


def needed_templates(
    pipeline: str,
    spec: ReleaseSpec,
    namespace: str,
    templates: dict[str, Manifest] | None = None,
) -> dict[str, Manifest]:
    """The pipeline's WorkflowTemplate and those it references, in `namespace`, validated.

    Ordered as they must be applied: the referenced ones first. `templates`: the spec's,
    already rendered (`pipeline_templates`), to render them once for many pipelines.

    Raises:
        PipelineNotFoundError: no such pipeline.
        SpecError: the spec lacks what the pipeline needs.
        ValidationFailed: a template does not pass strict validation.
    """
    templates = pipeline_templates(spec) if templates is None else templates
    if pipeline not in templates:
        get_pipeline(pipeline).build(spec)  # raises why the spec cannot render it

    def in_namespace(name: str) -> Manifest:
        if name not in templates:
            raise SubmitError(
                f"the {pipeline} template references {name!r}, which the spec does not render"
            )
        template = templates[name]
        return {**template, "metadata": {**template["metadata"], "namespace": namespace}}

    needed = with_references([pipeline], in_namespace)
    _check([(f"{name} (WorkflowTemplate)", t) for name, t in needed.items()])
    # In apply order: a template after those it references (the server checks them).
    return {name: needed[name] for name in templates if name in needed}


def _check(documents: list[tuple[str, Manifest]]) -> None:
    """Strict validation; what has no schema here is left to the API server, with a warning."""
    problems = validate_documents(documents, SchemaRegistry())
    for problem in (p for p in problems if p.unchecked):
        log.warning("%s", problem)
    if any(not p.unchecked for p in problems):
        raise ValidationFailed([str(p) for p in problems if not p.unchecked])

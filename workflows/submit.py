"""Submit a rendered pipeline to an Argo server through Hera's WorkflowsService.

The manifest is validated strictly first: a bad spec or a broken template fails here, with
the field named, before anything reaches the cluster. Connection settings follow the `argo`
CLI's environment variables so an existing setup works unchanged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import cast

import requests
from hera.workflows import WorkflowsService, models
from hera.workflows.models import WorkflowCreateRequest

from workflows.exceptions import SubmitError, ValidationFailed
from workflows.pipelines import get_pipeline
from workflows.spec import ReleaseSpec
from workflows.validation import SchemaRegistry, validate_documents

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
    token: str | None = None
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


def submit(pipeline: str, spec: ReleaseSpec, server: ArgoServer) -> str:
    """Validate and submit a pipeline; returns the created workflow's name.

    Raises:
        ValidationFailed: the rendered Workflow does not pass strict validation.
        SubmitError: the server is unreachable or refused the workflow.
    """
    workflow = get_pipeline(pipeline).build(spec)
    namespace = server.namespace or spec.namespace
    workflow.namespace = namespace
    problems = validate_documents([(pipeline, workflow.to_dict())], SchemaRegistry())
    for problem in (p for p in problems if p.unchecked):
        # No CRD here to check it against; the cluster's API server validates it on apply.
        log.warning("%s", problem)
    if any(not p.unchecked for p in problems):
        raise ValidationFailed([str(p) for p in problems if not p.unchecked])
    service = WorkflowsService(
        host=server.host, token=server.token, namespace=namespace, verify_ssl=server.verify_tls
    )
    try:
        request = WorkflowCreateRequest(workflow=cast(models.Workflow, workflow.build()))
        created = service.create_workflow(request, namespace=namespace)
    except requests.ConnectionError:
        raise SubmitError(
            f"cannot reach the Argo server at {server.host}; check --host/ARGO_SERVER and "
            "that the server (or its port-forward) is up"
        ) from None
    except Exception as exc:  # Hera raises one class per HTTP status
        raise SubmitError(f"the Argo server at {server.host} refused the workflow: {exc}") from None
    if created.metadata is None or not created.metadata.name:
        raise SubmitError(f"the Argo server at {server.host} answered without a workflow name")
    return created.metadata.name

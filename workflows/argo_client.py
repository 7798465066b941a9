"""The few calls of the Argo server's REST API that llmflow makes, with errors that say the fix.

Workflows, WorkflowTemplates and CronWorkflows are created and read through the paths of Argo's
published API (`/api/v1/workflows/{namespace}`, `/api/v1/workflow-templates/{namespace}`,
`/api/v1/cron-workflows/{namespace}`); an update carries the object's `resourceVersion`, as
the Kubernetes API behind the server requires, so a concurrent change is a conflict rather
than a lost write. The token is sent as a bearer header and never appears in a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from workflows.exceptions import SubmitError

#: API path segment and request body key of each kind the client writes.
_KINDS = {
    "Workflow": ("workflows", "workflow"),
    "WorkflowTemplate": ("workflow-templates", "template"),
    "CronWorkflow": ("cron-workflows", "cronWorkflow"),
}


@dataclass(frozen=True)
class ArgoClient:
    """An Argo server's REST API.

    Attributes:
        host: Base URL, e.g. https://argo.example.com:2746.
        token: Bearer token, or None (a server in `--auth-mode=server`).
        verify_tls: False to accept a self-signed certificate.
        timeout: Seconds one request may take.
    """

    host: str
    token: str | None = field(default=None, repr=False)  # never printed
    verify_tls: bool = True
    timeout: float = 30.0

    def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        """Create a Workflow, WorkflowTemplate or CronWorkflow; returns the server's object."""
        segment, key = _KINDS[obj["kind"]]
        return self._call("POST", f"/api/v1/{segment}/{namespace}", {key: obj}, obj["kind"])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when the server has none of that name."""
        segment, _ = _KINDS[kind]
        return self._call("GET", f"/api/v1/{segment}/{namespace}/{name}", None, kind, missing=True)

    def stop(self, namespace: str, name: str) -> None:
        """Stop a workflow (`argo stop`): its pods end and its exit handler runs."""
        body = {"name": name, "namespace": namespace}
        self._call("PUT", f"/api/v1/workflows/{namespace}/{name}/stop", body, "Workflow")

    def apply(self, obj: dict[str, Any], namespace: str) -> tuple[str, dict[str, Any]]:
        """Create the template or CronWorkflow, or replace the one of that name.

        Returns:
            ("created" | "updated" | "unchanged", the server's object).
        """
        kind, name = obj["kind"], obj["metadata"]["name"]
        current = self.get(kind, namespace, name)
        if current is None:
            return "created", self.create(obj, namespace)
        if _same(current, obj):
            return "unchanged", current
        segment, key = _KINDS[kind]
        body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        payload = {key: body, "name": name, "namespace": namespace}
        updated = self._call("PUT", f"/api/v1/{segment}/{namespace}/{name}", payload, kind)
        return "updated", updated

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        kind: str,
        missing: bool = False,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = requests.request(
                method,
                self.host + path,
                json=body,
                headers=headers,
                verify=self.verify_tls,
                timeout=self.timeout,
            )
        except requests.ConnectionError:
            raise SubmitError(
                f"cannot reach the Argo server at {self.host}; check --host/ARGO_SERVER and "
                "that the server (or its port-forward) is up"
            ) from None
        except requests.Timeout:
            raise SubmitError(
                f"the Argo server at {self.host} did not answer within {self.timeout:g} s"
            ) from None
        if missing and response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise SubmitError(
                f"the Argo server at {self.host} refused the {kind} ({response.status_code}): "
                "check --token/ARGO_TOKEN and that its account may act in this namespace"
            )
        if response.status_code >= 400:
            raise SubmitError(
                f"the Argo server at {self.host} refused the {kind} "
                f"({response.status_code}): {_message(response)}"
            )
        return response.json()


def _message(response: requests.Response) -> str:
    """The server's error message (grpc-gateway's `{"code", "message"}`), else the body."""
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text[:500]


def _same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether the server's object already is the desired one.

    The server returns objects normalised (empty fields filled in) and adds labels of its
    own (the creator's), so the desired labels and annotations must be among the server's,
    and the spec equal once empty values are dropped.
    """
    meta, want = current.get("metadata", {}), desired.get("metadata", {})
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return (
        _pruned(current.get("spec")) == _pruned(desired.get("spec"))
        and all(labels.get(k) == v for k, v in (want.get("labels") or {}).items())
        and all(annotations.get(k) == v for k, v in (want.get("annotations") or {}).items())
    )


def _pruned(value: Any) -> Any:
    """A value without its empty dicts, lists, strings and nulls (as Go's omitempty drops)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value

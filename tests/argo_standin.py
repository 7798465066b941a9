"""A recording stand-in for the Argo server's REST API, checked against Argo's own swagger spec.

No Argo server can run here. This one accepts only requests that Argo v4.1.2's published API
(`swagger-v4.1.2.json`) defines: a known path and method, and a body that passes the
operation's schema with every object closed. Anything else gets the 4xx a real server would
send. Accepted requests are recorded for the test to inspect. Objects are stored as the
Kubernetes API stores them: a create of an existing name is a conflict, an update must carry
the stored `resourceVersion`, a Workflow must reference a WorkflowTemplate that exists. It runs
nothing: a test sets a workflow's status in `statuses`.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema

from workflows.validation._strict import close_schema


@dataclass
class Recorded:
    method: str
    path: str
    operation: str
    headers: dict[str, str]
    body: Any


@dataclass
class ArgoStandIn:
    swagger_path: Path
    token: str = "secret-token"
    requests: list[Recorded] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    #: Stored objects by API kind segment, then (namespace, name).
    objects: dict[str, dict[tuple[str, str], Any]] = field(default_factory=dict)
    #: Workflow statuses a test sets, by workflow name (a stand-in runs nothing).
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    _version: int = 0

    def __post_init__(self) -> None:
        swagger = json.loads(self.swagger_path.read_text())
        self._definitions = close_schema(swagger["definitions"])
        self._routes = []
        for template, methods in swagger["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$")
            for method, op in methods.items():
                self._routes.append((pattern, method.upper(), op))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ArgoStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _check(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        route = next(
            ((p, m, op) for p, m, op in self._routes if m == method and p.match(path)), None
        )
        if route is None:
            return 404, {"code": 5, "message": f"no route {method} {path}"}, None
        op = route[2]
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"code": 16, "message": "token not valid"}, None
        body = json.loads(raw or b"null")
        for param in op.get("parameters", []):
            if param.get("in") == "body":
                schema = {"definitions": self._definitions, **close_schema(param["schema"])}
                errors = list(jsonschema.Draft4Validator(schema).iter_errors(body))
                if errors:
                    msg = "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
                    return 400, {"code": 3, "message": msg}, None
        return 200, None, Recorded(method, path, op["operationId"], headers, body)

    def _serve(self, record: Recorded) -> tuple[int, Any]:
        """What the server's objects answer: stored like the Kubernetes API stores them."""
        parts = record.path.split("?")[0].strip("/").split("/")  # api v1 <kind> <ns> [name]
        kind, namespace = parts[2], parts[3]
        name = parts[4] if len(parts) > 4 else None
        store = self.objects.setdefault(kind, {})
        if record.method == "GET":
            obj = store.get((namespace, name))
            if obj is None:
                return 404, {"code": 5, "message": f'{kind} "{name}" not found'}
            if kind == "workflows" and name in self.statuses:
                obj = {**obj, "status": self.statuses[name]}
            return 200, obj
        key = {"workflows": "workflow", "workflow-templates": "template"}.get(kind, "cronWorkflow")
        obj = json.loads(json.dumps(record.body[key]))
        meta = obj.setdefault("metadata", {})
        if record.method == "PUT":
            current = store.get((namespace, name))
            if current is None:
                return 404, {"code": 5, "message": f'{kind} "{name}" not found'}
            if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, {"code": 10, "message": "the object has been modified"}
        else:
            if kind == "workflows":
                if not meta.get("name"):  # generateName: x7k2p, then other suffixes
                    prefix, n = meta.get("generateName", "wf-"), 0
                    meta["name"] = f"{prefix}x7k2p"
                    while (namespace, meta["name"]) in store:
                        n += 1
                        meta["name"] = f"{prefix}x7k2{n}"
                ref = (obj.get("spec") or {}).get("workflowTemplateRef")
                if ref and (namespace, ref["name"]) not in self.objects.get(
                    "workflow-templates", {}
                ):
                    return 400, {
                        "code": 3,
                        "message": f'workflowtemplates.argoproj.io "{ref["name"]}" not found',
                    }
            if (namespace, meta.get("name")) in store:
                return 409, {"code": 6, "message": f'{kind} "{meta.get("name")}" already exists'}
        if kind == "workflow-templates":
            missing = self._missing_refs(namespace, obj)
            if missing:  # as the server's validation of a template (validate.go)
                return 400, {"code": 3, "message": f"template reference {missing} not found"}
        self._version += 1
        meta["namespace"] = namespace
        meta["resourceVersion"] = str(self._version)
        # What a real server returns is its Go structs' view: the creator's label added and
        # empty fields filled in, not the bytes that were sent.
        meta.setdefault("labels", {})["workflows.argoproj.io/creator"] = "system-serviceaccount"
        for template in (obj.get("spec") or {}).get("templates") or []:
            for empty in ("metadata", "inputs", "outputs"):
                template.setdefault(empty, {})
        store[(namespace, meta["name"])] = obj
        return 200, obj

    def _missing_refs(self, namespace: str, obj: dict[str, Any]) -> str | None:
        """The first `templateRef` of a template that names no stored WorkflowTemplate."""
        stored = self.objects.get("workflow-templates", {})
        for template in (obj.get("spec") or {}).get("templates") or []:
            tasks = (template.get("dag") or {}).get("tasks") or []
            steps = [s for group in template.get("steps") or [] for s in group]
            for call in tasks + steps:
                ref = call.get("templateRef")
                if ref and (namespace, ref["name"]) not in stored:
                    return f"{ref['name']}.{ref['template']}"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, error, record = standin._check(method, self.path, dict(self.headers), raw)
                if record is None:
                    standin.rejected.append(error["message"])
                    payload = error
                else:
                    status, payload = standin._serve(record)
                    if status == 200 or method == "GET":  # a 404 is an answer, not a refusal
                        standin.requests.append(record)
                    else:
                        standin.rejected.append(payload["message"])
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._respond("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._respond("PUT")

            def do_GET(self) -> None:  # noqa: N802
                self._respond("GET")

            def log_message(self, *args: object) -> None:
                pass

        return Handler

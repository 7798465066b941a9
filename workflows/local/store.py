"""The run folder: `.llmflow/runs/<workflow>/`, what `llmflow runs` reads and the live view shows.

    workflow.yaml        the Workflow as executed
    status.json          phase, timings, message and every node, shaped like Argo's status
    nodes/<id>/main.log  each node's stdout and stderr
    nodes/<id>/fs/       the node's view of absolute paths that are not volumes
    artifacts/<id>/      output artifacts
    resume               written by `llmflow runs resume` to release suspended nodes

status.json is rewritten atomically on every change, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from workflows.exceptions import RunError

DEFAULT_ROOT = Path(".llmflow")

#: Phases a node ends in.
DONE = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})

#: Phases of a node that ran to an end (Argo's `Completed`: not Skipped, not Omitted).
COMPLETED = frozenset({"Succeeded", "Failed", "Error"})

#: Phases of a node that did not succeed.
FAILED = frozenset({"Failed", "Error"})


def now() -> str:
    """An RFC 3339 timestamp as Argo writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_type(template: dict[str, Any]) -> str:
    """The type of the node a template runs as (Pod for container, script and resource)."""
    for key, kind in (("dag", "DAG"), ("steps", "Steps"), ("suspend", "Suspend")):
        if key in template:
            return kind
    return "Pod"


@dataclass
class Node:
    """One node of a run, as Argo's NodeStatus describes it.

    `template_name` is the name of the template the node runs, also when a `templateRef`
    named it (`wfutil.GetTemplateFromNode`), so a node is found by its template either way.
    The status writes it as Argo does: `templateName` only for a `template:` call, the
    `templateRef` as given otherwise, and the `templateScope` the resolution started from.
    """

    id: str
    name: str
    display_name: str
    type: str
    template_name: str = ""
    template_ref: dict[str, Any] | None = None
    template_scope: str = ""
    phase: str = "Pending"
    boundary_id: str = ""
    children: list[str] = field(default_factory=list)
    outbound_nodes: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    message: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The node in Argo's field names."""
        data = {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "type": self.type,
            "templateName": "" if self.template_ref else self.template_name,
            "templateRef": dict(self.template_ref or {}),
            "templateScope": self.template_scope,
            "phase": self.phase,
            "boundaryID": self.boundary_id,
            # Copies: worker threads change these while another thread writes the status.
            "children": list(self.children),
            "outboundNodes": list(self.outbound_nodes),
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "message": self.message,
            "inputs": dict(self.inputs),
            "outputs": dict(self.outputs),
            "durationSeconds": round((self.finished or time.time()) - self.started, 3)
            if self.started
            else 0,
        }
        return {k: v for k, v in data.items() if v not in ("", {}, [])}


class RunStore:
    """The folder of one run."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.path = root / "runs" / name

    def node_dir(self, node_id: str) -> Path:
        """The folder of one node (logs, mapped paths)."""
        path = self.path / "nodes" / node_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_workflow(self, workflow: dict[str, Any]) -> None:
        """Keep the Workflow as it was executed."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "workflow.yaml").write_text(yaml.safe_dump(workflow, sort_keys=False))

    def write_status(self, status: dict[str, Any]) -> None:
        """Replace status.json atomically."""
        tmp = self.path / f".status.json.{os.getpid()}"
        tmp.write_text(json.dumps(status, indent=1))
        os.replace(tmp, self.path / "status.json")

    def read_status(self) -> dict[str, Any]:
        """The run's status.

        Raises:
            RunError: no such run.
        """
        try:
            return dict(json.loads((self.path / "status.json").read_text()))
        except FileNotFoundError:
            raise RunError(
                f"no run named {self.name!r} under {self.root / 'runs'}; see `llmflow runs list`"
            ) from None

    @property
    def resume_marker(self) -> Path:
        """The file whose presence resumes suspended nodes."""
        return self.path / "resume"


def list_runs(root: Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """Every run's status, newest first."""
    runs = []
    for status_file in (root / "runs").glob("*/status.json"):
        try:
            runs.append(json.loads(status_file.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(runs, key=lambda s: s.get("startedAt", ""), reverse=True)

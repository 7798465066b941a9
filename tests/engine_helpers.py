"""Helpers for the local engine's conformance tests: tiny Hera templates and a runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hera.workflows import Container, Parameter
from hera.workflows.models import ValueFrom

from workflows.local.engine import Run, RunOptions

IMAGE = "python:3.11-slim"  # ignored locally; kept so the YAML is what a cluster would run


def py(
    name: str, code: str, inputs: list[str] = (), outputs: list[str] = (), **kwargs: Any
) -> Container:
    """A container template running `python -c code`; output `x` is read from /tmp/out/x."""
    return Container(
        name=name,
        image=IMAGE,
        command=["python", "-c", code],
        inputs=[Parameter(name=i) for i in inputs],
        outputs=[Parameter(name=o, value_from=ValueFrom(path=f"/tmp/out/{o}")) for o in outputs],
        **kwargs,
    )


def execute(workflow: Any, root: Path, **options: Any) -> Run:
    """Render a Hera Workflow to its YAML dict and run that with the local engine."""
    manifest = workflow.to_dict() if hasattr(workflow, "to_dict") else workflow
    run = Run(manifest, RunOptions(root=root, **options))
    run.execute()
    return run


def by_name(run: Run) -> dict[str, Any]:
    """Nodes by their display name (unique within these small workflows)."""
    return {node.display_name: node for node in run.nodes.values()}


def outputs(node: Any) -> dict[str, str]:
    return {p["name"]: p["value"] for p in node.outputs.get("parameters") or []}

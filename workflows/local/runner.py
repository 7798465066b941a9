"""`llmflow run`: render or load a Workflow, execute it with a live view, handle Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from workflows.exceptions import LLMFlowError
from workflows.local.engine import Run, RunOptions
from workflows.local.images import load_image_map
from workflows.local.view import LiveView, make_console, render


def load_workflow(
    pipeline: str | None, spec_path: Path | None, workflow_file: Path | None
) -> dict[str, Any]:
    """The Workflow to run: a rendered pipeline, or a YAML file."""
    if workflow_file is not None:
        try:
            data = yaml.safe_load(workflow_file.read_text())
        except yaml.YAMLError as exc:
            raise LLMFlowError(f"{workflow_file}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise LLMFlowError(f"{workflow_file}: not a Workflow")
        return data
    if spec_path is None:
        raise LLMFlowError(f"running pipeline {pipeline!r} needs a release spec: -f SPEC")
    from workflows.render import render as render_pipeline
    from workflows.spec import load_spec

    return render_pipeline(str(pipeline), load_spec(spec_path))


def run_workflow(
    pipeline: str | None,
    spec_path: Path | None,
    workflow_file: Path | None,
    overrides: dict[str, str],
    root: Path,
    image_map: Path | None = None,
) -> str:
    """Execute with a live view; the first Ctrl-C stops cleanly, a second one aborts."""
    console = make_console()
    workflow = load_workflow(pipeline, spec_path, workflow_file)
    view = LiveView(console)
    options = RunOptions(
        root=root,
        parameters=overrides,
        on_change=view.on_change,
        images=load_image_map(image_map, root),
    )
    run = Run(workflow, options)

    interrupts = 0

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        console.print("stopping: ending processes, then the exit handler (Ctrl-C again aborts)")
        run.stop("Stopped by user (Ctrl-C)")

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with view:
            phase = run.execute()
    finally:
        signal.signal(signal.SIGINT, previous)
    console.print(render(run.status(), outputs=True))
    console.print(f"run folder: {run.store.path}")
    return phase

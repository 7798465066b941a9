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

    spec = load_spec(spec_path)
    return render_pipeline(str(pipeline), spec)


def apply_referenced_templates(
    workflow: dict[str, Any], spec_path: Path | None, root: Path
) -> list[str]:
    """Apply the WorkflowTemplates a rendered pipeline references, rendered from its spec.

    A pipeline composed by `templateRef` (the release) runs its stages from the templates on
    the platform, as on a cluster; running it from a spec puts the spec's templates there
    first (what `llmflow templates apply --local` does), so the run is the spec's.
    """
    from workflows.local.templates import LocalTemplates
    from workflows.render import render as render_pipeline
    from workflows.spec import load_spec
    from workflows.templates import referenced_templates, with_references, workflow_template

    if spec_path is None:
        return []
    spec = load_spec(spec_path)
    store = LocalTemplates(root)
    templates = with_references(
        referenced_templates(workflow),
        lambda name: workflow_template(render_pipeline(name, spec), name),
    )
    for template in templates.values():
        store.apply(template)
    return list(templates)


def workflow_from(source: str, spec_path: Path | None) -> dict[str, Any]:
    """The Workflow `argo submit --from KIND/NAME` makes, from the spec's objects.

    `cronwf/NAME`: one run of the spec's schedule NAME; `workflowtemplate/NAME` (or
    `wftmpl/NAME`): a run of the pipeline NAME's template.
    """
    from workflows.spec import load_spec
    from workflows.templates import pipeline_templates, template_workflow

    kind, _, name = source.partition("/")
    if not name or kind not in ("cronwf", "cronworkflow", "workflowtemplate", "wftmpl"):
        raise LLMFlowError(
            f"--from {source!r}: give cronwf/NAME (a schedule of the spec) or "
            "workflowtemplate/NAME (a pipeline)"
        )
    if spec_path is None:
        raise LLMFlowError(f"--from {source}: needs the release spec it comes from: -f SPEC")
    spec = load_spec(spec_path)
    if kind in ("workflowtemplate", "wftmpl"):
        template = pipeline_templates(spec).get(name)
        if template is None:
            raise LLMFlowError(f"--from {source}: the spec renders no pipeline {name!r}")
        return template_workflow(template)
    from workflows.schedules import cron_workflows, workflow_from_cron

    if not any(s.name == name for s in spec.schedules):
        known = ", ".join(s.name for s in spec.schedules) or "none"
        raise LLMFlowError(f"--from {source}: {spec_path} has no schedule {name!r}; its: {known}")
    [wanted] = [s for s in spec.schedules if s.name == name]
    from workflows.render import render
    from workflows.templates import workflow_template

    templates = {wanted.pipeline: workflow_template(render(wanted.pipeline, spec), wanted.pipeline)}
    [cron] = cron_workflows(spec.model_copy(update={"schedules": [wanted]}), templates)
    return workflow_from_cron(cron)


def run_workflow(
    pipeline: str | None,
    spec_path: Path | None,
    workflow_file: Path | None,
    overrides: dict[str, str],
    root: Path,
    image_map: Path | None = None,
    source: str | None = None,
) -> str:
    """Execute with a live view; the first Ctrl-C stops cleanly, a second one aborts."""
    console = make_console()
    if source is not None:
        workflow = workflow_from(source, spec_path)
    else:
        workflow = load_workflow(pipeline, spec_path, workflow_file)
    if pipeline is not None or source is not None:
        for name in apply_referenced_templates(workflow, spec_path, root):
            console.print(f"workflowtemplate/{name} applied locally", highlight=False)
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

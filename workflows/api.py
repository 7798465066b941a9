"""Start pipelines from Python: what `llmflow submit` and `llmflow run` do, as a typed API.

    from workflows.api import Local, submit

    run = submit("fetch-weights", "releases/tiny.yaml",
                 parameters={"source": "file:///models/tiny"}, target=Local())
    result = run.wait(timeout=600)
    print(result.phase, result.outputs["digest"])

A target is an Argo server (`ArgoServer`, or None: the `ARGO_SERVER`/`ARGO_TOKEN`
environment) or this machine (`Local`). Either way the run is a Workflow that references the
pipeline's WorkflowTemplate with the overridden parameters, so a notebook, a CI script and
the Argo UI start the same run, and the result reads the same: the workflow's name, phase,
message and outputs (each pipeline exports its results as workflow outputs: `digest`,
`checkpoint`, `passed`, `version`, ...).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows.exceptions import LLMFlowError, SubmitError
from workflows.spec import ReleaseSpec, load_spec
from workflows.submit import ArgoServer

#: Phases after which a workflow changes no more.
FINISHED = ("Succeeded", "Failed", "Error")

__all__ = [
    "ArgoServer",
    "Local",
    "RunResult",
    "Submission",
    "WaitTimeout",
    "submit",
]


class WaitTimeout(LLMFlowError):
    """The workflow did not finish within the timeout; it goes on running."""


@dataclass(frozen=True)
class Local:
    """This machine: the local engine, with its WorkflowTemplates and runs under `root`.

    Attributes:
        root: The local engine's folder (as `llmflow run --root`).
        env: The environment steps run with (None: this process's). Secrets that no step
            created are read from variables named like their keys, as with `llmflow run`.
        on_change: Called with the run whenever a node changes (a progress view).
    """

    root: Path = Path(".llmflow")
    env: Mapping[str, str] | None = None
    on_change: Callable[[Any], None] | None = None


Target = Local | ArgoServer


@dataclass(frozen=True)
class RunResult:
    """A workflow as it stands: finished or not.

    Attributes:
        name: The workflow's name.
        phase: Pending, Running, Succeeded, Failed or Error.
        message: Why it failed (empty while running or after success).
        outputs: The workflow's output parameters (`status.outputs.parameters`).
    """

    name: str
    phase: str
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the workflow has ended."""
        return self.phase in FINISHED

    @property
    def succeeded(self) -> bool:
        """Whether the workflow ended in Succeeded."""
        return self.phase == "Succeeded"


class Submission:
    """A submitted workflow: read its state, or wait for its end."""

    def __init__(
        self,
        name: str,
        target: Target,
        poll: Callable[[], RunResult],
        stop: Callable[[], None],
    ) -> None:
        self.name = name
        self.target = target
        self._poll = poll
        self._stop = stop

    def stop(self) -> None:
        """Stop the workflow as `argo stop` does: its processes end, its exit handler runs."""
        self._stop()

    def status(self) -> RunResult:
        """The workflow's phase, message and outputs now."""
        return self._poll()

    def wait(self, timeout: float | None = None, interval: float | None = None) -> RunResult:
        """Block until the workflow ends; returns its result.

        Args:
            timeout: The most seconds to wait; None: as long as it runs.
            interval: Seconds between two looks (default: 5 on a server, 0.5 locally).

        Raises:
            WaitTimeout: still running after `timeout` seconds (it is not stopped).
        """
        if interval is None:
            interval = 0.5 if isinstance(self.target, Local) else 5.0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self._poll()
            if result.finished:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"workflow {self.name} is still {result.phase} after {timeout:g} s; it goes "
                    "on running: wait again, or stop it (`Submission.stop()`, `argo stop`)"
                )
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.05))


def submit(
    pipeline: str,
    spec: ReleaseSpec | str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, str] | None = None,
    target: Target | None = None,
    wait: bool = False,
    timeout: float | None = None,
    apply_templates: bool = False,
) -> Submission:
    """Start a pipeline (or any applied WorkflowTemplate) and return its submission.

    Args:
        pipeline: The pipeline's name (`llmflow pipelines`), which is also its template's.
        spec: The release spec (or its path) the templates are rendered from. None: run the
            template as it was applied (`llmflow templates apply`), e.g. from a notebook
            that has no checkout.
        parameters: Workflow parameters to override, by name (checked against the template).
        target: An Argo server, or `Local()`; None: the Argo server from the environment.
        wait: Block until the workflow ends (see `Submission.wait`).
        timeout: With `wait`, the most seconds to wait.
        apply_templates: On an Argo server, apply the spec's templates first (locally they
            are always applied from the spec).

    Raises:
        SpecError: a bad spec, an unknown parameter, a value outside an enum.
        ValidationFailed: a rendered template does not pass strict validation.
        SubmitError: the server is unreachable, lacks the template, or refused the workflow.
        WaitTimeout: `wait` with a `timeout` that passed.
    """
    loaded = load_spec(Path(spec)) if isinstance(spec, (str, os.PathLike)) else spec
    target = ArgoServer.from_env() if target is None else target
    if isinstance(target, Local):
        submission = _submit_local(pipeline, loaded, parameters or {}, target)
    else:
        submission = _submit_argo(pipeline, loaded, parameters or {}, target, apply_templates)
    if wait:
        submission.wait(timeout)
    return submission


def _submit_argo(
    pipeline: str,
    spec: ReleaseSpec | None,
    parameters: Mapping[str, str],
    server: ArgoServer,
    apply_templates: bool,
) -> Submission:
    from workflows.submit import submit as submit_spec
    from workflows.templates import template_workflow

    client = server.client()
    if spec is not None:
        namespace = server.namespace or spec.namespace
        name = submit_spec(pipeline, spec, server, parameters, apply_templates)
    else:
        if not server.namespace:
            raise SubmitError(
                "submitting a template without a spec needs a namespace: -n/--namespace or "
                "ARGO_NAMESPACE"
            )
        namespace = server.namespace
        template = client.get("WorkflowTemplate", namespace, pipeline)
        if template is None:
            raise SubmitError(
                f"the Argo server at {server.host} has no WorkflowTemplate {pipeline!r} in "
                f"namespace {namespace}; apply it with `llmflow templates apply -f SPEC`"
            )
        created = client.create(template_workflow(template, parameters), namespace)
        name = created["metadata"]["name"]

    def poll() -> RunResult:
        workflow = client.get("Workflow", namespace, name)
        if workflow is None:
            raise SubmitError(f"workflow {name} is gone from namespace {namespace}")
        return _result(name, workflow.get("status") or {})

    def stop() -> None:
        client.stop(namespace, name)

    return Submission(name, server, poll, stop)


def _submit_local(
    pipeline: str, spec: ReleaseSpec | None, parameters: Mapping[str, str], local: Local
) -> Submission:
    from workflows.local.engine import Run, RunOptions
    from workflows.local.templates import LocalTemplates
    from workflows.templates import pipeline_templates, template_workflow

    store = LocalTemplates(local.root)
    if spec is not None:
        apply_local_templates(spec, store)
        namespace = spec.namespace
        template = pipeline_templates(spec).get(pipeline)
        if template is None:
            from workflows.pipelines import get_pipeline

            get_pipeline(pipeline).build(spec)  # raises why the spec cannot render it
            raise SubmitError(f"the spec renders no {pipeline} template")
    else:
        found = [t for t in store.list() if t["metadata"]["name"] == pipeline]
        if len(found) != 1:
            where = "several namespaces" if found else "no namespace"
            raise SubmitError(
                f"{pipeline!r}: the local platform has that WorkflowTemplate in {where}; "
                "apply it with `llmflow templates apply --local -f SPEC`"
            )
        template = found[0]
        namespace = template["metadata"].get("namespace", "default")
    workflow = template_workflow(template, parameters)
    workflow["metadata"]["namespace"] = namespace
    options = RunOptions(
        root=local.root,
        env=None if local.env is None else dict(local.env),
        on_change=local.on_change,
        templates=store,
    )
    run = Run(workflow, options)
    failure: list[BaseException] = []

    def execute() -> None:
        try:
            run.execute()
        except BaseException as exc:  # reported by poll(), not lost in the thread
            failure.append(exc)

    thread = threading.Thread(target=execute, name=f"llmflow-{run.name}", daemon=True)
    thread.start()

    def poll() -> RunResult:
        if failure:
            raise failure[0]
        if thread.is_alive():  # the phase is set before the exit handler has run
            return RunResult(run.name, "Running")
        return _result(run.name, run.status())

    def stop() -> None:
        run.stop("Stopped with strategy 'Stop'")
        thread.join()

    def stop_at_exit() -> None:  # the run's processes (vLLM, torchrun) must not outlive us
        if thread.is_alive():
            stop()

    atexit.register(stop_at_exit)
    return Submission(run.name, local, poll, stop)


def apply_local_templates(spec: ReleaseSpec, store: Any) -> list[str]:
    """Put every template the spec renders on the local platform; returns their names."""
    from workflows.templates import pipeline_templates

    names = []
    for name, template in pipeline_templates(spec).items():
        store.apply(template)
        names.append(name)
    return names


def _result(name: str, status: dict[str, Any]) -> RunResult:
    outputs = (status.get("outputs") or {}).get("parameters") or []
    return RunResult(
        name=name,
        phase=status.get("phase") or "Pending",
        message=status.get("message") or "",
        outputs={p["name"]: str(p.get("value", "")) for p in outputs},
    )

"""The release pipeline: weights to production in one run, composed of the other pipelines.

    load-release (with a git tag) -> fetch-weights -> build-images -> finetune -> evaluate
      -> deploy (only when the gate passed: shadow, canary, promote or roll back)
      -> judge-release -> record-release;  exit: finish-release

Each stage is the `main` template of another pipeline's WorkflowTemplate, called by
`templateRef` (not a copy), so a fix to `deploy` is a fix to every release; `llmflow templates
apply` puts them all on the cluster. The stages' own templates read the platform's settings
(image, Secrets, cache, retries, registry) from the workflow's parameters, so the release
declares the union of the stages' parameters, which one spec gives one value each; what
flows from stage to stage (the fine-tuned checkpoint, as `candidate`) is passed as
arguments to the stages' `main`.

The DAG ends Succeeded whatever the outcome, after `judge-release` has named it and
`record-release` has written the record (and moved the aliases, for a release that reached
production); the exit handler `finish-release` then fails unless the outcome is production,
with the reason as the workflow's message (see steps/release.py).
"""

from __future__ import annotations

import json
from typing import Any

from hera.workflows import DAG, Parameter, Script, Workflow
from hera.workflows.models import Mutex, Synchronization, TemplateRef, Volume

from steps._hera import S3_ENV
from steps.record import check_records, record_release
from steps.release import finish_release, judge_release, load_release, spec_digest
from workflows._common import new_workflow, param
from workflows.exceptions import SpecError
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec

NAME = "release"

#: The stages, in order; `build-images` only with an `images` section.
STAGES = ("fetch-weights", "build-images", "finetune", "evaluate", "deploy")

#: Parameters a stage's `main` takes as arguments from an earlier stage, not from the release.
PASSED_ON = {"candidate"}

#: Every way a task can end (`depends` sees all of them).
_ENDED = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted")


def stages(spec: ReleaseSpec) -> dict[str, dict[str, Any]]:
    """The stages' rendered Workflows, by pipeline name.

    Raises:
        SpecError: the spec lacks a section a release needs (finetune, evaluate, serving).
    """
    from workflows.pipelines import get_pipeline

    missing = [
        section for section in ("finetune", "evaluate", "serving") if getattr(spec, section) is None
    ]
    if missing:
        raise SpecError(
            f"the release pipeline needs the {', '.join(missing)} section(s) in the release "
            "spec: it fine-tunes, evaluates and deploys; see releases/tiny.yaml"
        )
    names = [n for n in STAGES if n != "build-images" or spec.images is not None]
    return {name: get_pipeline(name).build(spec).to_dict() for name in names}


def release_parameters(spec: ReleaseSpec, rendered: dict[str, dict[str, Any]]) -> list[Parameter]:
    """The union of the stages' parameters, then the release's own (tag, commit, records).

    Raises:
        SpecError: two stages give one parameter different values (a pipeline bug: their
            templates would read one value).
    """
    merged: dict[str, dict[str, Any]] = {}
    for pipeline, workflow in rendered.items():
        for p in workflow["spec"]["arguments"]["parameters"]:
            if p["name"] in PASSED_ON:
                continue
            seen = merged.setdefault(p["name"], {**p, "_from": pipeline})
            if seen.get("value") != p.get("value"):
                raise SpecError(
                    f"parameter {p['name']}: {seen['_from']} gives {seen.get('value')!r}, "
                    f"{pipeline} gives {p.get('value')!r}; a release needs one value"
                )
    parameters = [
        Parameter(
            name=p["name"], value=p.get("value"), enum=p.get("enum"), description=p["description"]
        )
        for p in merged.values()
    ]
    own = [
        Parameter(
            name="tag",
            value="",
            description="git tag release/<model>/<semver> that started this release; empty: "
            "none (the spec as applied)",
        ),
        Parameter(
            name="commit", value="", description="the tag's commit; the spec is checked there"
        ),
        Parameter(
            name="records",
            value=spec.records.uri,
            description="where release records and aliases are kept (s3:// or file://)",
        ),
    ]
    if "repo" not in merged:  # build-images declares both when the spec has images
        own.append(Parameter(name="repo", value="", description="the repository's git URL"))
    if "revision" not in merged:
        own.append(
            Parameter(name="revision", value="HEAD", description="the commit a tag released")
        )
    return parameters + own


def _stage(name: str, depends: str, arguments: dict[str, str] | None = None, **extra: Any) -> Any:
    """A DAG task that runs another pipeline's `main` from its WorkflowTemplate."""
    from hera.workflows import Task

    return Task(
        name=name,
        template_ref=TemplateRef(name=name, template="main"),
        depends=depends,
        arguments=arguments or {},
        **extra,
    )


def _restore(name: str, template: str, depends: str) -> Any:
    """A task running one of deploy's resource templates (by `templateRef`)."""
    from hera.workflows import Task

    return Task(
        name=name, template_ref=TemplateRef(name="deploy", template=template), depends=depends
    )


def _out(task: str, name: str) -> str:
    """A task's output, nil-safe: empty when the task did not run (`tasks['x']?.outputs...`)."""
    return f"{{{{=tasks['{task}']?.outputs?.parameters?.['{name}'] ?? ''}}}}"


def _global_out(name: str) -> str:
    """A global output parameter, nil-safe: empty when no step has set it."""
    return f"{{{{=workflow?.outputs?.parameters?.['{name}'] ?? ''}}}}"


def _json_out(task: str, name: str) -> str:
    """A task's output as a JSON string literal, for JSON assembled from outputs."""
    return f"{{{{=toJson(tasks['{task}']?.outputs?.parameters?.['{name}'] ?? '')}}}}"


def build(spec: ReleaseSpec) -> Workflow:
    """The release Workflow for a spec with finetune, evaluate and serving sections."""
    rendered = stages(spec)
    parameters = release_parameters(spec, rendered)
    spec_json = spec.model_dump_json()
    with new_workflow(spec, NAME, parameters) as workflow:
        # The stages' volumes (the model cache, the registry's credentials), each once.
        volumes: dict[str, Any] = {}
        for stage in rendered.values():
            for volume in stage["spec"].get("volumes") or []:
                volumes.setdefault(volume["name"], volume)
        workflow.volumes = [Volume.model_validate(v) for v in volumes.values()]
        workflow.on_exit = "finish-release"
        # One release of a model at a time; a deploy on its own takes the deploy mutex.
        workflow.synchronization = Synchronization(
            mutexes=[Mutex(name=f"release-{spec.model.name}")]
        )
        # An exit handler is a template the DAG does not call: add it as a template.
        Script(  # with the S3 Secret: it records a release that ended early
            name="finish-release",
            source=finish_release.wrapped_function,  # type: ignore[attr-defined]
            env=S3_ENV,
        )

        with DAG(name="main"):
            load_release(
                arguments={
                    "tag": param(workflow, "tag"),
                    "commit": param(workflow, "commit"),
                    "repo": param(workflow, "repo"),
                    "model-name": param(workflow, "model-name"),
                    "spec-digest": spec_digest(spec.model_dump_json(exclude_unset=True)),
                },
                when=f"'{param(workflow, 'tag')}' != ''",
            )
            check_records(arguments={"records": param(workflow, "records")})
            previous = "(load-release.Succeeded || load-release.Skipped) && check-records"
            for name in rendered:
                arguments = {}
                extra: dict[str, Any] = {}
                if name in ("evaluate", "deploy"):
                    arguments["candidate"] = "{{tasks.finetune.outputs.parameters.checkpoint}}"
                if name == "deploy":
                    extra["when"] = "{{tasks.evaluate.outputs.parameters.passed}} == true"
                _stage(name, previous, arguments, **extra)
                previous = name if name != "deploy" else previous
            # A deploy stage that failed (a crash, a failed promotion) leaves no traffic on an
            # unjudged canary: the release puts it all back on stable, as deploy's exit
            # handler does for a deploy of its own.
            _restore("restore-route", "route-stable", "deploy.Failed || deploy.Errored")
            for name in ("remove-canary", "remove-canary-service"):
                _restore(f"restore-{name}", name, "restore-route")
            tasks = ("load-release", "check-records", *rendered)
            ended = " && ".join(
                "(" + " || ".join(f"{name}.{phase}" for phase in _ENDED) + ")"
                for name in (*tasks, "restore-remove-canary", "restore-remove-canary-service")
            )
            phases = {name: f"{{{{tasks.{name}.status}}}}" for name in tasks}
            judged = judge_release(
                depends=ended,
                arguments={
                    "stages": json.dumps(phases),
                    "passed": _out("evaluate", "passed"),
                    "decision": _out("evaluate", "decision"),
                },
            )
            training = {
                key: _json_out("finetune", key)
                for key in ("checkpoint", "final-loss", "steps", "tokens-per-second")
            }
            record_release(
                depends="judge-release",
                arguments={
                    "records": param(workflow, "records"),
                    "model-name": param(workflow, "model-name"),
                    "workflow-name": "{{workflow.name}}",
                    "namespace": "{{workflow.namespace}}",
                    "outcome": judged.get_parameter("outcome").value,
                    "reason": judged.get_parameter("reason").value,
                    "spec": spec_json,
                    "git": _out("load-release", "git"),
                    "weights-uri": _out("finetune", "checkpoint"),
                    "weights-digest": _out("deploy", "digest"),
                    "images": _out("build-images", "images") if "build-images" in rendered else "",
                    "training": _assemble(training),
                    "evaluation": _assemble(
                        {k: _json_out("evaluate", k) for k in ("passed", "decision")}
                    ),
                    "canary": _assemble({k: _json_out("deploy", k) for k in ("mode", "version")}),
                    # The judged stages' evidence: global outputs, set by the deploy's
                    # analyse steps whether they passed or not (empty: never judged).
                    **{name: _global_out(name) for name in ("shadow-evidence", "canary-evidence")},
                    "started-at": "{{workflow.creationTimestamp}}",
                },
            )
    return workflow


def _assemble(fields: dict[str, str]) -> str:
    """A JSON object whose values are JSON literals (from `toJson` expressions)."""
    return "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"


PIPELINE = Pipeline(
    NAME,
    "weights to production: fetch, build, fine-tune, evaluate and gate, canary, record",
    build,
)

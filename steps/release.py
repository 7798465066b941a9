"""The release pipeline's own steps: check a tagged release's spec, judge the outcome, finish.

    load-release    (with a git tag) the repository at the tag's commit: the tag's shape, its
                    model, and that `releases/<model>.yaml` there is the spec this release
                    template was rendered from (a stale template would release something else)
    judge-release   what the release came to (production, rolled-back, gate-failed, failed)
                    and why, from the stages' phases and outputs
    finish-release  the exit handler: Succeeded only when the release reached production,
                    else Failed with the reason, which Argo makes the workflow's message

Argo sets a failed workflow's message from its entry node, and a DAG's node carries none; an
exit handler that fails after a successful entry gives the workflow its own message
(`operator.go`: `markWorkflowFailed(ctx, onExitNode.Message)`). So the release's DAG ends
Succeeded whatever the outcome, with the outcome recorded, and `finish-release` turns it into
the workflow's phase and message.
"""

import json
import logging
from pathlib import Path
from typing import Annotated

from hera.workflows import Parameter, script
from hera.workflows.io import Output
from hera.workflows.models import Artifact, GitArtifact

import steps._hera  # noqa: F401  (class defaults: image, runner)
from steps._hera import S3_ENV
from steps.errors import SourceError, StepError

#: Where Argo checks the repository out for `load-release`.
SOURCE_PATH = "/tmp/release-source"

#: What `finish-release` sees when no stage recorded an outcome: Argo leaves an unresolved
#: `{{workflow.outputs.parameters.x}}` as it is (`SubstituteParams`, allowUnresolved).
_UNRESOLVED = "{{"

log = logging.getLogger(__name__)


def spec_digest(spec_json: str) -> str:
    """The digest of a release spec, as the template records it and the tag's spec is checked.

    Of the fields the file sets (`exclude_unset`), so a default that a newer llmflow adds in
    the pod does not make a tagged spec differ from the one the template came from.
    """
    import hashlib

    canonical = json.dumps(json.loads(spec_json), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _source_artifact() -> Artifact:
    return Artifact(
        name="source",
        path=SOURCE_PATH,
        git=GitArtifact(
            repo="{{workflow.parameters.repo}}", revision="{{workflow.parameters.commit}}"
        ),
    )


class LoadedRelease(Output):
    """The git reference of a tagged release."""

    git: Annotated[str, Parameter(name="git", description="JSON {repo, commit, tag}")]
    version: Annotated[str, Parameter(name="version", description="the tag's semantic version")]


@script(inputs=[_source_artifact()])  # type: ignore[arg-type]
def load_release(
    tag: Annotated[str, Parameter(name="tag", description="release/<model>/<semver>")],
    commit: Annotated[str, Parameter(name="commit", description="the tag's commit")],
    repo: Annotated[str, Parameter(name="repo", description="the repository's URL")],
    model_name: Annotated[str, Parameter(name="model-name", description="the template's model")],
    digest: Annotated[
        str, Parameter(name="spec-digest", description="digest of the spec this template is from")
    ],
    source: Annotated[str, Parameter(name="source-path")] = SOURCE_PATH,
) -> LoadedRelease:
    """Check the tag and that the spec at its commit is the one this template runs."""
    from workflows.exceptions import LLMFlowError
    from workflows.spec import load_spec
    from workflows.tags import parse_release_tag, spec_for_tag

    try:
        parsed = parse_release_tag(tag)
        if parsed.model != model_name:
            raise SourceError(
                f"tag {tag!r} releases {parsed.model!r}, but this is the release template of "
                f"{model_name!r}: submit the template of {parsed.model}, or fix the tag"
            )
        path = spec_for_tag(parsed, Path(source))
        spec = load_spec(path)
    except LLMFlowError as exc:
        raise SourceError(str(exc)) from None
    found = spec_digest(spec.model_dump_json(exclude_unset=True))
    if found != digest:
        shown = path.relative_to(Path(source)) if path.is_relative_to(Path(source)) else path
        raise SourceError(
            f"{shown} at {commit[:12]} ({tag}) is not the spec the release template was "
            f"rendered from ({found[:19]} != {digest[:19]}); apply the templates from the "
            f"tagged spec first: `llmflow templates apply -f {shown}` at that commit (or "
            "`llmflow submit release ... --apply-templates`)"
        )
    log.info("release %s of %s: spec at %s checked", parsed.version, parsed.model, commit[:12])
    git = {"repo": repo, "commit": commit, "tag": tag}
    return LoadedRelease(git=json.dumps(git), version=parsed.version)


class Judgement(Output):
    """What a release came to."""

    outcome: Annotated[
        str,
        Parameter(
            name="outcome",
            description="production, rolled-back, gate-failed or failed",
            global_name="outcome",
        ),
    ]
    reason: Annotated[
        str, Parameter(name="reason", description="why, in a sentence", global_name="reason")
    ]


@script()
def judge_release(
    stages: Annotated[
        str, Parameter(name="stages", description="JSON {stage task: its phase}, in order")
    ],
    passed: Annotated[str, Parameter(name="passed", description="the gate's answer, or empty")],
    decision: Annotated[str, Parameter(name="decision", description="the gate's evidence")] = "",
) -> Judgement:
    """Production when deploy succeeded; gate-failed, rolled-back or failed (naming the stage)."""
    phases = json.loads(stages)
    deploy = phases.get("deploy", "")
    if deploy == "Succeeded":
        return Judgement(outcome="production", reason="the candidate passed every stage")
    if passed == "false":
        return Judgement(outcome="gate-failed", reason=f"the evaluation gate failed: {decision}")
    if deploy in ("Failed", "Errored", "Error"):
        return Judgement(
            outcome="rolled-back",
            reason="the deploy stage failed: a canary that did not pass is rolled back, and "
            "a failed rollout step has the release restore stable; stable serves all traffic "
            "(see the deploy stage's steps and analyse reports)",
        )
    failed = [name for name, phase in phases.items() if phase in ("Failed", "Errored", "Error")]
    where = failed[0] if failed else "a stage"
    return Judgement(outcome="failed", reason=f"{where} failed; nothing was deployed")


# An exit handler takes no arguments: its inputs' defaults name what it reads.
@script(env=S3_ENV)
def finish_release(
    outcome: Annotated[
        str, Parameter(name="outcome", description="the outcome judge-release recorded")
    ] = "{{workflow.outputs.parameters.outcome}}",
    reason: Annotated[
        str, Parameter(name="reason", description="why")
    ] = "{{workflow.outputs.parameters.reason}}",
    status: Annotated[
        str, Parameter(name="status", description="the workflow's phase")
    ] = "{{workflow.status}}",
    failures: Annotated[
        str, Parameter(name="failures", description="the failed nodes (JSON)")
    ] = "{{workflow.failures}}",
    records: Annotated[
        str, Parameter(name="records", description="the record store")
    ] = "{{workflow.parameters.records}}",
    model_name: Annotated[
        str, Parameter(name="model-name", description="the model")
    ] = "{{workflow.parameters.model-name}}",
    workflow_name: Annotated[
        str, Parameter(name="workflow-name", description="this run")
    ] = "{{workflow.name}}",
    started_at: Annotated[
        str, Parameter(name="started-at", description="when it started")
    ] = "{{workflow.creationTimestamp}}",
) -> None:
    """Fail with the reason unless the release reached production.

    A release stopped (or failed) before `record-release` ran is recorded here, as failed,
    so that every release leaves a record.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if outcome.startswith(_UNRESOLVED):
        why = f"the release did not finish ({status}): {_first_failure(failures)}"
        _record_unfinished(records, model_name, workflow_name, started_at, why)
        raise StepError(why)
    if outcome == "failed":
        raise StepError(f"release failed: {reason}: {_first_failure(failures)}")
    if outcome != "production":
        raise StepError(f"release {outcome}: {reason}")
    log.info("release reached production: %s", reason)


def _record_unfinished(
    records: str, model_name: str, workflow_name: str, started_at: str, why: str
) -> None:
    """Write the failed record of a release that ended before `record-release`; best effort."""
    from steps.record import record_release

    if records.startswith(_UNRESOLVED):
        return
    try:
        record_release(
            records=records,
            model_name=model_name,
            workflow_name=workflow_name,
            outcome="failed",
            reason=why,
            started_at="" if started_at.startswith(_UNRESOLVED) else started_at,
        )
    except Exception as exc:  # the reason matters more than the record: say why, go on
        log.warning("could not record the unfinished release: %s", exc)


def _first_failure(failures: str) -> str:
    """The first failed node and its message, from Argo's `{{workflow.failures}}` JSON."""
    try:
        nodes = json.loads(failures)
    except ValueError:
        return "see the failed steps"
    if not nodes:
        return "it was stopped"
    first = nodes[0]
    return f"{first.get('displayName', '?')}: {first.get('message', '')}".strip()

"""The `record-release` step: write the release's immutable record, and promote it if it won.

Runs last in a release (an exit handler sees every outcome) as
    python -m hera.workflows.runner -e steps.record:record_release <inputs.json>
and outside a workflow it is an ordinary function:
    record_release(records="file:///tmp/records", model_name="tiny-llama",
                   workflow_name="deploy-x7k2p", outcome="failed", reason="fetch failed")

Inputs are strings, as Argo passes them; an empty string is an absent part (a release that
failed early has no weights or canary). With outcome `production` the record is also made
production (`RecordStore.promote`), conditional on the alias as read just before: of two
releases finishing together one wins, and the other's step fails naming it. It has no retry
strategy for that reason: a retry would read the winner's alias and replace it.
"""

import json
import logging
from datetime import datetime
from typing import Annotated, Any

from hera.workflows import Parameter, script
from hera.workflows.io import Output
from pydantic import ValidationError

from steps._hera import S3_ENV, step_logger
from steps.errors import StepError
from steps.releases import OUTCOMES, RecordStore, ReleaseRecord, release_id, utc_now
from steps.releases.path import describe_path, promotion_path


class RecordedRelease(Output):
    """The release's id and where its record is."""

    release: Annotated[str, Parameter(name="release", description="the release id")]
    record: Annotated[str, Parameter(name="record", description="URI of the record (JSON)")]


@script(env=S3_ENV)
def record_release(
    records: Annotated[str, Parameter(name="records", description="store URI (spec records.uri)")],
    model_name: Annotated[str, Parameter(name="model-name", description="the model's name")],
    workflow_name: Annotated[str, Parameter(name="workflow-name", description="the run's name")],
    outcome: Annotated[
        str, Parameter(name="outcome", description="production, rolled-back, gate-failed, failed")
    ],
    reason: Annotated[str, Parameter(name="reason", description="why, in a sentence")] = "",
    namespace: Annotated[str, Parameter(name="namespace", description="the run's")] = "",
    spec: Annotated[str, Parameter(name="spec", description="the release spec, JSON")] = "",
    git: Annotated[str, Parameter(name="git", description="JSON {repo, commit, tag}")] = "",
    weights_uri: Annotated[str, Parameter(name="weights-uri", description="weights served")] = "",
    weights_digest: Annotated[
        str, Parameter(name="weights-digest", description="sha256:<hex> of the weights")
    ] = "",
    images: Annotated[str, Parameter(name="images", description="JSON {name: digest}")] = "",
    training: Annotated[str, Parameter(name="training", description="JSON training summary")] = "",
    evaluation: Annotated[
        str, Parameter(name="evaluation", description="JSON {passed, decision, report, results}")
    ] = "",
    canary: Annotated[str, Parameter(name="canary", description="JSON {stages, report}")] = "",
    shadow_evidence: Annotated[
        str, Parameter(name="shadow-evidence", description="JSON: analyse-shadow's evidence")
    ] = "",
    canary_evidence: Annotated[
        str, Parameter(name="canary-evidence", description="JSON: the last canary stage's")
    ] = "",
    started_at: Annotated[
        str, Parameter(name="started-at", description="ISO 8601 start, e.g. 2025-03-01T12:00:00Z")
    ] = "",
) -> RecordedRelease:
    """Store the record; with outcome `production`, move the aliases to it."""
    step_logger(__name__, quiet=("botocore",))
    if outcome not in OUTCOMES:
        raise StepError(f"outcome {outcome!r}: give one of {', '.join(OUTCOMES)}")
    if weights_digest and not weights_uri:
        raise StepError("weights-digest is given but weights-uri is empty: give both")
    started = _time("started-at", started_at) if started_at else utc_now()
    try:
        release = release_id(workflow_name, started)
    except ValueError as exc:
        raise StepError(f"workflow-name: {exc}") from None
    summaries = {
        "evaluation": _summary(_json("evaluation", evaluation)),
        "canary": _summary(_json("canary", canary)),
    }
    production = {
        "version": (summaries["canary"] or {}).get("version"),
        "digest": weights_digest or None,
    }
    path = promotion_path(
        outcome,
        reason,
        summaries["evaluation"],
        _json("shadow-evidence", shadow_evidence),
        _json("canary-evidence", canary_evidence),
        {k: v for k, v in production.items() if v},
    )
    fields: dict[str, Any] = {
        "model": model_name,
        "release": release,
        "outcome": outcome,
        "reason": reason,
        "started_at": started,
        "finished_at": max(utc_now(), started),
        "workflow": {"name": workflow_name, "namespace": namespace or None},
        "spec": _json("spec", spec),
        "git": _json("git", git),
        "weights": {"uri": weights_uri, "digest": weights_digest or None} if weights_uri else None,
        "images": _json("images", images),
        "training": _summary(_json("training", training)),
        "evaluation": summaries["evaluation"],
        "canary": summaries["canary"],
        "stages": path or None,
    }
    try:
        record = ReleaseRecord.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise StepError(f"release record of {model_name!r}: {problems}") from None
    store = RecordStore.open(records)
    uri = store.put(record)
    log = logging.getLogger(__name__)
    log.info("recorded release %s of %s (%s) at %s", release, model_name, outcome, uri)
    if path:
        log.info("promotion path: %s", describe_path(path))
    if outcome == "production":
        aliases = store.promote(model_name, release)
        log.info(
            "%s is production of %s (previous: %s)",
            release,
            model_name,
            aliases.previous or "none",
        )
    return RecordedRelease(release=release, record=uri)


def _json(name: str, text: str) -> Any:
    """The JSON value of an input, None when it is empty."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StepError(f"{name}: {text[:200]!r} is not JSON ({exc}); give a JSON object") from None


def _summary(value: Any) -> Any:
    """A summary with its keys in snake_case and its empty values left out; None when nothing is.

    A pipeline assembles a summary from its stages' outputs, which are kebab-case
    (`final-loss`) and empty (null, or "" from `?? ''`) for a stage that did not run: a
    release that failed before fine-tuning then has no training part rather than one of
    empty strings its fields cannot hold.
    """
    if not isinstance(value, dict):
        return value
    kept = {
        str(key).replace("-", "_"): item
        for key, item in value.items()
        if item is not None and item != ""
    }
    return kept or None


def _time(name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise StepError(
            f"{name}: {text!r} is not an ISO 8601 time; give one like 2025-03-01T12:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise StepError(f"{name}: {text!r} has no time zone; give one like 2025-03-01T12:00:00Z")
    return value


@script(env=S3_ENV)
def check_records(
    records: Annotated[str, Parameter(name="records", description="store URI (spec records.uri)")],
) -> None:
    """Fail now if the store cannot move aliases, not after a release reached production.

    A store that ignores conditional writes (s3rver) would let two releases both win; the
    release checks it before it trains and deploys anything.
    """
    RecordStore.open(records).check_conditions()
    step_logger(__name__).info("record store %s moves aliases conditionally", records)

"""The `llmflow releases` commands: list and show release records, roll production back.

Records and aliases live where the spec's `records.uri` says (`steps.releases`); `list` and
`show` read them, `rollback` redeploys the previous release through the deploy pipeline and,
once that succeeded, records it and moves the aliases back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from steps.releases import (
    RecordStore,
    ReleaseRecord,
    WeightsRef,
    WorkflowRef,
    release_id,
    utc_now,
)
from steps.releases.path import describe_path
from workflows.cli_options import argo_server_options, local_root_option
from workflows.exceptions import LLMFlowError

if TYPE_CHECKING:
    from workflows.api import RunResult
    from workflows.spec import ReleaseSpec

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """`workflows.cli._friendly`, looked up when called: `workflows.cli` imports this module."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workflows.cli import _friendly as friendly

        return friendly(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


records_option = click.option(
    "--records",
    "records_uri",
    envvar="LLMFLOW_RECORDS",
    help="The record store: s3://bucket[/prefix] or file:///path. Default: the spec's "
    "`records.uri` with -f, else .llmflow/records (local releases) when it exists, else "
    "s3://llmflow-releases. Env: LLMFLOW_RECORDS.",
)
spec_path_option = click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Release spec whose `records.uri` names the store.",
)


#: Where local releases keep their records (`llmflow demo` sets `records` to it).
LOCAL_RECORDS = Path(".llmflow/records")


def open_store(records_uri: str | None, spec_path: Path | None) -> RecordStore:
    """The store `--records` names, else the spec's, else the local one, else the default."""
    from workflows.spec import load_spec
    from workflows.spec_release import RecordsSection

    if records_uri and spec_path:
        raise LLMFlowError("give --records URI or -f SPEC, not both")
    if records_uri:
        return RecordStore.open(records_uri)
    if spec_path:
        return RecordStore.open(load_spec(spec_path).records.uri)
    if LOCAL_RECORDS.is_dir():
        return RecordStore.open(f"file://{LOCAL_RECORDS.resolve()}")
    return RecordStore.open(RecordsSection().uri)


@click.group("releases")
def releases_group() -> None:
    """Release records: what each release did, and which one is in production."""


@releases_group.command("list")
@click.argument("model")
@records_option
@spec_path_option
@_friendly
def list_cmd(model: str, records_uri: str | None, spec_path: Path | None) -> None:
    """List MODEL's releases, newest first, marking the production and previous ones."""
    store = open_store(records_uri, spec_path)
    records = store.list(model)
    if not records:
        click.echo(f"no releases of {model} recorded in {store.uri}", err=True)
        return
    aliases = store.aliases(model)
    marks = {aliases.production: "production", aliases.previous: "previous"}
    rows = [("ALIAS", "RELEASE", "OUTCOME", "WEIGHTS", "TAG", "FINISHED")]
    for record in records:
        rows.append(
            (
                marks.get(record.release, ""),
                record.release,
                record.outcome,
                _short_digest(record),
                (record.git.tag if record.git else None) or "-",
                f"{record.finished_at:%Y-%m-%d %H:%M:%S%z}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@releases_group.command("show")
@click.argument("model")
@click.argument("release", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the record as stored (JSON).")
@records_option
@spec_path_option
@_friendly
def show_cmd(
    model: str,
    release: str | None,
    as_json: bool,
    records_uri: str | None,
    spec_path: Path | None,
) -> None:
    """Show one release of MODEL: RELEASE, or the production one."""
    store = open_store(records_uri, spec_path)
    aliases = store.aliases(model)
    if release is None:
        if aliases.production is None:
            raise LLMFlowError(
                f"{model} has no production release in {store.uri}; give a RELEASE "
                f"(`llmflow releases list {model}`)"
            )
        release = aliases.production
    record = store.get(model, release)
    if as_json:
        click.echo(record.to_json(), nl=False)
        return
    marks = {aliases.production: "production", aliases.previous: "previous"}
    click.echo(describe(record, marks.get(record.release), store.record_uri(model, release)))


@releases_group.command("rollback")
@click.argument("model")
@click.option(
    "-f",
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The model's release spec: the deploy pipeline and canary to redeploy with.",
)
@click.option("--local", is_flag=True, help="Run the deploy pipeline on this machine.")
@local_root_option("With --local: the local engine's folder.")
@argo_server_options
@click.option("--timeout", type=float, help="Most seconds to wait for the deploy to end.")
@records_option
@_friendly
def rollback_cmd(
    model: str,
    spec_path: Path,
    local: bool,
    root: Path,
    host: str | None,
    token: str | None,
    namespace: str | None,
    insecure: bool | None,
    timeout: float | None,
    records_uri: str | None,
) -> None:
    """Put MODEL's previous release back in production, through the deploy pipeline.

    Redeploys the previous release's weights with the spec's canary. When the deploy
    succeeds, writes a record (outcome production, reason `rollback of <release>`) and makes
    it production, with the release rolled back from as previous; the aliases must not have
    moved meanwhile. When it fails, the attempt is recorded (outcome failed), the aliases
    stay as they were, and the command exits 1 with the workflow's message.
    """
    from workflows.api import Local, submit
    from workflows.spec import load_spec
    from workflows.submit import ArgoServer

    spec = load_spec(spec_path)
    if model != spec.model.name:
        raise LLMFlowError(f"MODEL {model!r} is not the spec's model.name {spec.model.name!r}")
    store = RecordStore.open(records_uri or spec.records.uri)
    aliases = store.aliases(model)
    if aliases.previous is None:
        raise LLMFlowError(
            f"{model} has no previous release in {store.uri} (production: "
            f"{aliases.production or 'none'}): nothing to roll back to"
        )
    store.check_conditions()  # before the deploy, not after it
    previous = store.get(model, aliases.previous)
    if previous.weights is None:
        raise LLMFlowError(f"release {previous.release} of {model} records no weights to deploy")
    target = Local(root) if local else ArgoServer.from_env(host, token, namespace, insecure)
    started = utc_now()
    click.echo(
        f"rolling {model} back from {aliases.production} to {previous.release} "
        f"({previous.weights.uri})",
        err=True,
    )
    submission = submit(
        "deploy", spec, parameters={"candidate": previous.weights.uri}, target=target
    )
    result = submission.wait(timeout)
    record = rollback_record(spec, previous, aliases.production, result, started)
    store.put(record)
    if not result.succeeded:
        raise SystemExit(
            f"error: the deploy workflow {result.name} ended {result.phase}: "
            f"{result.message or 'no message'}; production is still {aliases.production}"
        )
    moved = store.rollback(model, to=record.release, expected=aliases)
    click.echo(f"{model}: production {moved.production}, previous {moved.previous}")


def rollback_record(
    spec: ReleaseSpec,
    previous: ReleaseRecord,
    current: str | None,
    result: RunResult,
    started: datetime,
) -> ReleaseRecord:
    """The record of a rollback run: the previous release's weights, this run's outcome.

    The weights, training and evaluation are the previous release's (they describe the
    weights); the spec is the one the deploy ran with. The digest is the deploy's own when
    it reports one, so weights replaced at the same URI since do not pass as previous's.
    """
    assert previous.weights is not None
    weights = WeightsRef(
        uri=previous.weights.uri,
        digest=result.outputs.get("digest") or previous.weights.digest,
    )
    succeeded = result.succeeded
    return ReleaseRecord(
        model=previous.model,
        release=release_id(result.name, started),
        outcome="production" if succeeded else "failed",
        reason=f"rollback of {current}"
        if succeeded
        else f"rollback of {current} failed: {result.message or result.phase}",
        started_at=started,
        finished_at=utc_now(),
        workflow=WorkflowRef(name=result.name, namespace=spec.namespace),
        spec=spec.model_dump(mode="json"),
        weights=weights,
        training=previous.training,
        evaluation=previous.evaluation,
    )


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    """A stage's evidence in a few lines: the window and requests, then each check."""
    lines = []
    requests = evidence.get("requests") or {}
    if evidence.get("window_s") is not None:
        lines.append(
            f"window {evidence['window_s']} s, fraction {evidence.get('fraction')}, requests "
            f"{requests.get('candidate')} candidate / {requests.get('stable')} stable"
        )
    if evidence.get("stage") is not None:
        lines.append(f"at {evidence['stage']}% of traffic, {evidence.get('looks', 1)} look(s)")
    for name, check in sorted((evidence.get("checks") or {}).items()):
        interval = check.get("interval")
        bounds = ""
        if interval:
            # Records keep an unbounded end as null (strict JSON has no infinity).
            lower = "-inf" if interval[0] is None else f"{interval[0]:.3g}"
            upper = "inf" if interval[1] is None else f"{interval[1]:.3g}"
            limit = check.get("limit")
            shown = f"{limit:.3g}" if isinstance(limit, int | float) else str(limit)
            bounds = f" [{lower}, {upper}] limit {shown}"
        lines.append(f"{name} {check.get('verdict')}{bounds}")
    decision = evidence.get("decision")
    if decision:
        lines += [decision] if isinstance(decision, str) else [str(d) for d in decision]
    return lines


def describe(record: ReleaseRecord, alias: str | None, uri: str) -> str:
    """The record as lines a person reads: one part of the release per paragraph."""
    lines = [
        f"release     {record.release}" + (f"  ({alias})" if alias else ""),
        f"model       {record.model}",
        f"outcome     {record.outcome}" + (f": {record.reason}" if record.reason else ""),
        f"started     {record.started_at.isoformat()}",
        f"finished    {record.finished_at.isoformat()}",
        f"record      {uri}",
    ]
    if record.workflow:
        where = f" in {record.workflow.namespace}" if record.workflow.namespace else ""
        lines.append(f"workflow    {record.workflow.name}{where}")
    if record.spec:
        lines.append("spec        " + _spec_summary(record.spec))
    if record.git:
        git = record.git
        lines.append(
            f"git         {git.repo or '?'} @ {git.commit or '?'}"
            + (f" (tag {git.tag})" if git.tag else "")
        )
    if record.weights:
        lines.append(f"weights     {record.weights.uri}  {record.weights.digest or ''}".rstrip())
    for name, digest in sorted((record.images or {}).items()):
        lines.append(f"image       {name}  {digest}")
    if record.training:
        t = record.training
        parts = [
            f"{t.steps} steps" if t.steps is not None else "",
            f"final loss {t.final_loss:.4f}" if t.final_loss is not None else "",
            f"{t.tokens_per_second:.0f} tokens/s" if t.tokens_per_second is not None else "",
            f"checkpoint {t.checkpoint}" if t.checkpoint else "",
        ]
        lines.append("training    " + (", ".join(p for p in parts if p) or "-"))
    if record.evaluation:
        lines += _evaluation_lines(record)
    if record.stages:
        lines.append("path        " + describe_path(record.stages))
        for step in record.stages:
            reason = f": {step.reason}" if step.reason else ""
            lines.append(f"{step.name:<11} {step.verdict}{reason}")
            lines += [f"            {line}" for line in _evidence_lines(step.evidence or {})]
    if record.canary:
        for stage in record.canary.stages:
            at = f"{stage.stage}%" if stage.stage is not None else "stage"
            reason = f": {stage.reason}" if stage.reason else ""
            lines.append(f"canary      {at} {stage.verdict}{reason}")
        if record.canary.report:
            lines.append(f"canary      report {record.canary.report}")
    return "\n".join(lines)


def _evaluation_lines(record: ReleaseRecord) -> list[str]:
    ev = record.evaluation
    assert ev is not None
    verdict = {True: "gate PASSED", False: "gate FAILED", None: "gate -"}[ev.passed]
    lines = [f"evaluation  {verdict}" + (f", report {ev.report}" if ev.report else "")]
    decision = ev.decision.splitlines() if isinstance(ev.decision, str) else ev.decision or []
    lines += [f"            {line}" for line in decision]
    if isinstance(ev.results, str):
        lines.append(f"            results {ev.results}")
    elif ev.results:
        lines.append(f"            results {json.dumps(ev.results, sort_keys=True)}")
    return lines


def _spec_summary(spec: dict[str, Any]) -> str:
    """The spec's few fields that tell releases apart."""
    model = spec.get("model") or {}
    serving = spec.get("serving") or {}
    parts = [
        f"namespace {spec.get('namespace', '?')}",
        f"source {model.get('source', '?')}",
        f"served {serving.get('model')}" if serving.get("model") else "",
        f"image {spec.get('image')}" if spec.get("image") else "",
    ]
    return ", ".join(p for p in parts if p)


def _short_digest(record: ReleaseRecord) -> str:
    digest = record.weights.digest if record.weights else None
    if not digest:
        return "-"
    return digest.removeprefix("sha256:")[:12]

"""Release records and aliases against real stores: a folder, moto's S3 server, and s3rver.

moto's server honours `If-None-Match` and `If-Match` on PutObject; s3rver ignores both, so on
it the store must refuse to move aliases. The races start every writer from the same read
version and check that exactly one wins and the others are told which one did.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from steps.errors import StepError
from steps.record import record_release
from steps.releases import (
    Aliases,
    ConditionalWritesIgnored,
    RecordError,
    RecordExists,
    RecordNotFound,
    RecordStore,
    ReleaseConflict,
    ReleaseRecord,
    release_id,
)
from steps.releases.path import promotion_path
from workflows.api import RunResult
from workflows.exceptions import SpecError
from workflows.local.s3 import LocalS3, free_port
from workflows.releases_cli import releases_group, rollback_record
from workflows.spec import load_spec, parse_spec
from workflows.spec_release import RecordsSection

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tiny-llama"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

#: moto's S3 app served one request at a time. Its PutObject compares the condition and then
#: writes without a lock (`moto/s3/responses.py`), so under `moto.server`'s threads two racing
#: `If-Match` writers can both pass; AWS S3 makes the compare and the write one step. Served
#: one request at a time, moto's compare-then-write is atomic as AWS's is.
_MOTO_SERIAL = (
    "import sys; from werkzeug.serving import run_simple; "
    "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, "
    "MotoRequestHandler, create_backend_app; "
    "run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), "
    "threaded=False, request_handler=MotoRequestHandler)"
)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto's server exited at start with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto's server did not listen on {port} within 30 s")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server (see `_MOTO_SERIAL`) on a free port, for the whole session."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SERIAL, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def moto_uri(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on moto's server, the AWS variables pointing at it; its records URI."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = f"records-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/releases"


@pytest.fixture
def file_uri(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'records'}"


@pytest.fixture(params=["file", "moto"])
def store_uri(request: pytest.FixtureRequest) -> str:
    """A records URI on each store that honours conditional writes."""
    return str(request.getfixturevalue(f"{request.param}_uri"))


def make_record(
    workflow: str, *, at: datetime = T0, outcome: str = "production", **fields: Any
) -> ReleaseRecord:
    return ReleaseRecord(
        model=fields.pop("model", MODEL),
        release=release_id(workflow, at),
        outcome=outcome,  # type: ignore[arg-type]
        reason=fields.pop("reason", f"{workflow} ended {outcome}"),
        started_at=at,
        finished_at=at + timedelta(minutes=5),
        **fields,
    )


def weights(name: str) -> dict[str, str]:
    return {"uri": f"s3://llmflow-models/{name}", "digest": "sha256:" + name.encode().hex() * 4}


def read_object(uri: str) -> bytes:
    """The stored bytes behind a record URI, read without the store."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).read_bytes()
    from steps.weights.sources import s3_client

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())


# The record ---------------------------------------------------------------------------


def test_release_ids_sort_by_start_time_and_name_the_workflow() -> None:
    early = release_id("deploy-zzz", datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC))
    late = release_id("deploy-aaa", datetime(2025, 3, 2, 0, 0, 0, tzinfo=UTC))
    assert early == "20250301T235959Z-deploy-zzz"
    assert sorted([late, early]) == [early, late]
    # Another zone is converted to UTC, not written as it is.
    cet = timezone_offset(hours=1)
    assert release_id("d", datetime(2025, 3, 1, 1, 0, tzinfo=cet)) == "20250301T000000Z-d"


def timezone_offset(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


@pytest.mark.parametrize(
    ("workflow", "at", "message"),
    [
        ("Deploy_X", T0, "lowercase letters"),
        ("deploy-x", datetime(2025, 3, 1), "time zone"),
    ],
)
def test_release_id_refuses_what_cannot_name_a_release(
    workflow: str, at: datetime, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        release_id(workflow, at)


def test_a_record_needs_only_model_release_outcome_and_times() -> None:
    record = make_record("deploy-a", outcome="failed")
    stored = json.loads(record.to_json())
    assert set(stored) == {
        "schema_version",
        "model",
        "release",
        "outcome",
        "reason",
        "started_at",
        "finished_at",
    }
    assert ReleaseRecord.model_validate_json(record.to_json()) == record


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outcome": "promoted"}, "outcome"),
        ({"release": "deploy-a"}, "yyyymmddThhmmssZ"),
        ({"model": "../etc"}, "names a folder"),
        ({"schema_version": 99}, "upgrade llmflow"),
        ({"weight": {"uri": "s3://x/y"}}, "Extra inputs"),
        ({"weights": {"uri": "s3://x/y", "sha": "1"}}, "Extra inputs"),
    ],
)
def test_a_record_refuses_bad_fields(change: dict[str, Any], message: str) -> None:
    data = {**json.loads(make_record("deploy-a").to_json()), **change}
    with pytest.raises(ValueError, match=message):
        ReleaseRecord.model_validate(data)


# Put, get, list ------------------------------------------------------------------------


def test_records_are_stored_where_the_layout_says_and_listed_newest_first(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    first = make_record("deploy-a", at=T0, weights=weights("a"))
    second = make_record("deploy-b", at=T0 + timedelta(hours=1), outcome="gate-failed")
    other = make_record("deploy-c", model="other-model")
    for record in (first, second, other):
        store.put(record)

    uri = store.record_uri(MODEL, first.release)
    assert uri == f"{store_uri}/{MODEL}/records/{first.release}.json"
    assert json.loads(read_object(uri))["weights"] == weights("a")
    assert store.get(MODEL, first.release) == first
    assert store.releases(MODEL) == [second.release, first.release]
    assert [r.release for r in store.list(MODEL)] == [second.release, first.release]
    assert store.list("nothing-recorded") == []


def test_a_record_is_never_replaced(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    record = make_record("deploy-a", reason="the first")
    store.put(record)
    with pytest.raises(RecordExists, match=f"{record.release} of model {MODEL} is recorded"):
        store.put(record.model_copy(update={"reason": "the second"}))
    assert store.get(MODEL, record.release).reason == "the first"


def test_a_missing_record_says_how_to_find_the_recorded_ones(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    missing = release_id("deploy-nope", T0)
    with pytest.raises(RecordNotFound, match="llmflow releases list tiny-llama"):
        store.get(MODEL, missing)
    with pytest.raises(RecordError, match="an id is"):
        store.get(MODEL, "../../secrets")


@pytest.mark.parametrize("uri", ["http://host/x", "file://relative/x", "records", "s3:///key"])
def test_open_refuses_other_uris(uri: str) -> None:
    with pytest.raises(RecordError, match="use s3://bucket/prefix or file:///absolute/path"):
        RecordStore.open(uri)


# Aliases -------------------------------------------------------------------------------


def put_all(store: RecordStore, *workflows: str) -> list[ReleaseRecord]:
    records = [
        make_record(w, at=T0 + timedelta(hours=i), weights=weights(w))
        for i, w in enumerate(workflows)
    ]
    for record in records:
        store.put(record)
    return records


def test_promote_and_rollback_move_production_and_previous(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    a, b = put_all(store, "deploy-a", "deploy-b")
    assert store.aliases(MODEL) == Aliases(None, None, 0, None)
    assert store.alias(MODEL, "production") is None

    moved = store.promote(MODEL, a.release)
    assert (moved.production, moved.previous, moved.generation) == (a.release, None, 1)
    moved = store.promote(MODEL, b.release)
    assert (moved.production, moved.previous, moved.generation) == (b.release, a.release, 2)
    assert moved == store.aliases(MODEL)  # its tag is the stored version's: a next move's base
    assert store.alias(MODEL, "production") == b
    assert store.alias(MODEL, "previous") == a

    back = store.rollback(MODEL)
    assert (back.production, back.previous, back.generation) == (a.release, b.release, 3)
    again = store.rollback(MODEL)  # a swap: twice returns to where it started
    assert (again.production, again.previous) == (b.release, a.release)

    alias_uri = f"{store_uri}/{MODEL}/aliases/production.json"
    stored = json.loads(read_object(alias_uri))
    assert (stored["release"], stored["previous"], stored["action"]) == (
        b.release,
        a.release,
        "rollback",
    )


def test_only_a_production_outcome_can_be_promoted(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    failed = make_record("deploy-a", outcome="gate-failed")
    store.put(failed)
    with pytest.raises(RecordError, match="ended 'gate-failed'"):
        store.promote(MODEL, failed.release)
    with pytest.raises(RecordNotFound):
        store.promote(MODEL, release_id("deploy-never", T0))
    assert store.aliases(MODEL).production is None


def test_rollback_needs_a_previous_release(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    (a,) = put_all(store, "deploy-a")
    with pytest.raises(RecordError, match="no previous release"):
        store.rollback(MODEL)
    store.promote(MODEL, a.release)
    with pytest.raises(RecordError, match=f"production: {a.release}"):
        store.rollback(MODEL)
    with pytest.raises(RecordError, match="production already"):
        store.promote(MODEL, a.release)


def test_rollback_to_a_redeploy_of_previous_checks_its_weights(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    a, b = put_all(store, "deploy-a", "deploy-b")
    store.promote(MODEL, a.release)
    store.promote(MODEL, b.release)
    state = store.aliases(MODEL)
    wrong = make_record("rollback-x", at=T0 + timedelta(hours=5), weights=weights("deploy-b"))
    redeploy = make_record("rollback-y", at=T0 + timedelta(hours=6), weights=weights("deploy-a"))
    store.put(wrong)
    store.put(redeploy)

    with pytest.raises(RecordError, match="not the weights of previous release"):
        store.rollback(MODEL, to=wrong.release, expected=state)
    moved = store.rollback(MODEL, to=redeploy.release, expected=state)
    assert (moved.production, moved.previous) == (redeploy.release, b.release)


def test_a_move_from_a_stale_read_names_the_winner(store_uri: str) -> None:
    store = RecordStore.open(store_uri)
    a, b, c = put_all(store, "deploy-a", "deploy-b", "deploy-c")
    store.promote(MODEL, a.release)
    stale = store.aliases(MODEL)
    store.promote(MODEL, b.release)  # another release finished first

    with pytest.raises(ReleaseConflict) as promoted:
        store.promote(MODEL, c.release, expected=stale)
    assert promoted.value.winner == b.release
    assert f"is now {b.release} (generation 2), which won" in str(promoted.value)

    stale = store.aliases(MODEL)
    store.rollback(MODEL)  # someone else rolled back first
    with pytest.raises(ReleaseConflict) as rolled:
        store.rollback(MODEL, expected=stale)
    assert rolled.value.winner == a.release
    now = store.aliases(MODEL)
    assert (now.production, now.previous, now.generation) == (a.release, b.release, 3)


def _race(store_uri: str, releases: list[str], state: Aliases) -> list[tuple[str, str | None]]:
    """Each thread promotes its release from the same read `state`; (release, winner|None)."""
    barrier = threading.Barrier(len(releases))
    results: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def promote(release: str) -> None:
        store = RecordStore.open(store_uri)  # a writer of its own, as in another pod
        store.aliases(MODEL)
        barrier.wait()
        try:
            store.promote(MODEL, release, expected=state)
            outcome: str | None = None
        except ReleaseConflict as exc:
            outcome = exc.winner
        with lock:
            results.append((release, outcome))

    threads = [threading.Thread(target=promote, args=(r,)) for r in releases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.parametrize("first", [True, False], ids=["first-promotion", "replacing"])
def test_of_concurrent_promotions_exactly_one_wins(store_uri: str, first: bool) -> None:
    store = RecordStore.open(store_uri)
    base, *racers = put_all(store, "deploy-base", *(f"deploy-r{i}" for i in range(6)))
    if not first:
        store.promote(MODEL, base.release)
    state = store.aliases(MODEL)

    results = _race(store_uri, [r.release for r in racers], state)

    winners = [release for release, lost_to in results if lost_to is None]
    assert len(results) == len(racers)
    assert len(winners) == 1, results
    assert all(lost_to == winners[0] for _, lost_to in results if lost_to is not None)
    now = store.aliases(MODEL)
    assert now.production == winners[0]
    assert now.previous == (None if first else base.release)
    assert now.generation == state.generation + 1


def _promote_in_process(uri: str, release: str, state: Aliases, barrier: Any, results: Any) -> None:
    store = RecordStore.open(uri)
    barrier.wait()
    try:
        store.promote(MODEL, release, expected=state)
        results.put((release, None))
    except ReleaseConflict as exc:
        results.put((release, exc.winner))


def test_of_promotions_in_separate_processes_exactly_one_wins(file_uri: str) -> None:
    store = RecordStore.open(file_uri)
    base, *racers = put_all(store, "deploy-base", *(f"deploy-p{i}" for i in range(4)))
    store.promote(MODEL, base.release)
    state = store.aliases(MODEL)
    context = multiprocessing.get_context("fork")  # a copy of this process: no re-import
    barrier = context.Barrier(len(racers))
    results = context.Queue()
    procs = [
        context.Process(
            target=_promote_in_process, args=(file_uri, r.release, state, barrier, results)
        )
        for r in racers
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)

    winners = [release for release, lost_to in outcomes if lost_to is None]
    assert len(winners) == 1, outcomes
    assert all(lost_to == winners[0] for _, lost_to in outcomes if lost_to is not None)
    now = store.aliases(MODEL)
    assert (now.production, now.previous) == (winners[0], base.release)


# A store that ignores conditional writes ------------------------------------------------


def test_s3rver_ignores_conditions_so_aliases_are_not_moved_there(s3: LocalS3) -> None:
    client = s3.client()
    client.put_object(Bucket="models", Key="probe", Body=b"1")
    client.put_object(Bucket="models", Key="probe", Body=b"2", IfNoneMatch="*")  # accepted
    assert client.get_object(Bucket="models", Key="probe")["Body"].read() == b"2"

    store = RecordStore.open("s3://models/releases")
    (a,) = put_all(store, "deploy-a")
    with pytest.raises(ConditionalWritesIgnored, match="ignores If-None-Match"):
        store.promote(MODEL, a.release)
    assert store.aliases(MODEL).production is None
    listed = client.list_objects_v2(Bucket="models", Prefix=f"releases/{MODEL}/aliases/")
    assert listed.get("KeyCount", 0) == 0


def test_records_stay_create_only_on_a_store_that_ignores_conditions(s3: LocalS3) -> None:
    store = RecordStore.open("s3://models/releases")
    record = make_record("deploy-a", reason="the first")
    store.put(record)
    with pytest.raises(RecordExists):
        store.put(record.model_copy(update={"reason": "the second"}))
    assert store.get(MODEL, record.release).reason == "the first"


def test_moto_honours_both_conditions(moto_uri: str) -> None:
    from botocore.exceptions import ClientError

    from steps.weights.sources import s3_client

    bucket = moto_uri.removeprefix("s3://").partition("/")[0]
    client = s3_client()
    etag = client.put_object(Bucket=bucket, Key="k", Body=b"1")["ETag"]
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch='"' + "0" * 32 + '"')
    client.put_object(Bucket=bucket, Key="k", Body=b"4", IfMatch=etag)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"4"


# The record-release step ---------------------------------------------------------------


def step_inputs(records: str, **overrides: str) -> dict[str, str]:
    inputs = {
        "records": records,
        "model_name": MODEL,
        "workflow_name": "release-abc12",
        "namespace": "llmflow",
        "outcome": "production",
        "reason": "canary passed every stage",
        "spec": json.dumps({"model": {"name": MODEL, "source": "s3://llmflow-models/tiny"}}),
        "git": json.dumps({"repo": "https://git.example/llmflow", "commit": "abc123", "tag": ""}),
        "weights_uri": "s3://llmflow-models/tiny-llama-ft/final",
        "weights_digest": "sha256:" + "ab" * 32,
        "images": json.dumps({"steps": "sha256:" + "01" * 32}),
        "training": json.dumps({"steps": 100, "final-loss": 0.25, "tokens-per-second": 900.0}),
        "evaluation": json.dumps({"passed": "true", "decision": "PASS a\nPASS b"}),
        "canary": json.dumps(
            {"stages": [{"stage": 10, "verdict": "PASS"}], "mode": "canary", "version": "v2"}
        ),
        "started_at": "2025-03-01T12:00:00Z",
    }
    return {**inputs, **overrides}


def test_the_step_records_and_promotes_a_production_release(store_uri: str) -> None:
    result = record_release(**step_inputs(store_uri))  # type: ignore[arg-type]

    assert result.release == "20250301T120000Z-release-abc12"
    assert result.record == f"{store_uri}/{MODEL}/records/{result.release}.json"
    record = ReleaseRecord.model_validate_json(read_object(result.record))
    assert record.weights is not None and record.weights.digest == "sha256:" + "ab" * 32
    assert record.training is not None and record.training.final_loss == 0.25
    assert record.evaluation is not None and record.evaluation.passed is True
    assert record.canary is not None and record.canary.stages[0].verdict == "PASS"
    assert json.loads(read_object(result.record))["canary"]["version"] == "v2"
    assert record.workflow is not None and record.workflow.namespace == "llmflow"
    assert record.started_at == T0
    assert RecordStore.open(store_uri).aliases(MODEL).production == result.release


def test_the_step_leaves_out_empty_parts_and_moves_no_alias_for_a_failure(file_uri: str) -> None:
    empty = dict.fromkeys(
        ["spec", "git", "weights_uri", "weights_digest", "images", "training", "evaluation"], ""
    )
    result = record_release(
        **step_inputs(  # type: ignore[arg-type]
            file_uri,
            outcome="failed",
            canary=json.dumps({"mode": None, "version": None}),  # stages that did not run
            started_at="",
            **empty,
        )
    )
    stored = json.loads(read_object(result.record))
    assert stored["outcome"] == "failed"
    started = datetime.fromisoformat(stored["started_at"])  # no started-at: now
    assert abs(started - datetime.now(UTC)) < timedelta(minutes=1)
    assert result.release == release_id("release-abc12", started)
    assert set(stored) == {
        "schema_version",
        "model",
        "release",
        "outcome",
        "reason",
        "started_at",
        "finished_at",
        "workflow",
    }
    assert RecordStore.open(file_uri).aliases(MODEL).production is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"outcome": "promoted"}, "outcome 'promoted': give one of production"),
        ({"images": "{not json"}, "images: .* is not JSON"),
        ({"started_at": "yesterday"}, "started-at: 'yesterday' is not an ISO 8601 time"),
        ({"started_at": "2025-03-01T12:00:00"}, "has no time zone"),
        ({"weights_uri": ""}, "weights-digest is given but weights-uri is empty"),
        ({"workflow_name": "Release_1"}, "workflow-name"),
        ({"canary": json.dumps({"stages": [{"stage": 10}]})}, "canary.stages.0.verdict"),
    ],
)
def test_the_step_names_the_bad_input(
    file_uri: str, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(StepError, match=message):
        record_release(**step_inputs(file_uri, **overrides))  # type: ignore[arg-type]
    assert RecordStore.open(file_uri).releases(MODEL) == []


def test_the_step_refuses_to_promote_on_s3rver_but_keeps_the_record(s3: LocalS3) -> None:
    with pytest.raises(ConditionalWritesIgnored):
        record_release(**step_inputs("s3://models/releases"))  # type: ignore[arg-type]
    store = RecordStore.open("s3://models/releases")
    assert store.releases(MODEL) == ["20250301T120000Z-release-abc12"]
    assert store.aliases(MODEL).production is None


# The CLI -------------------------------------------------------------------------------


def test_releases_list_marks_the_aliases(file_uri: str) -> None:
    store = RecordStore.open(file_uri)
    a, b, c = put_all(store, "deploy-a", "deploy-b", "deploy-c")
    store.promote(MODEL, a.release)
    store.promote(MODEL, b.release)

    result = CliRunner().invoke(releases_group, ["list", MODEL, "--records", file_uri])

    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["ALIAS", "RELEASE", "OUTCOME", "WEIGHTS", "TAG", "FINISHED"]
    assert [row.split()[:2] for row in rows] == [
        [c.release, "production"],  # no alias: the row starts with the release
        ["production", b.release],
        ["previous", a.release],
    ]
    assert weights("deploy-b")["digest"].removeprefix("sha256:")[:12] in rows[1]


def test_releases_show_prints_production_readably_and_as_json(file_uri: str) -> None:
    store = RecordStore.open(file_uri)
    record = make_record(
        "deploy-a",
        weights=weights("a"),
        git={"repo": "https://git.example/llmflow", "commit": "abc123", "tag": "v1.2"},
        images={"serving": "sha256:" + "02" * 32},
        training={"steps": 100, "final_loss": 0.25, "tokens_per_second": 900.0},
        evaluation={"passed": False, "decision": ["FAIL x/acc: -0.2"], "report": "s3://r/i.html"},
        canary={"stages": [{"stage": 10, "verdict": "PASS"}, {"stage": 50, "verdict": "FAIL"}]},
        spec={"namespace": "llmflow", "model": {"name": MODEL, "source": "s3://m/tiny"}},
    )
    store.put(record)
    store.promote(MODEL, record.release)

    shown = CliRunner().invoke(releases_group, ["show", MODEL, "--records", file_uri])
    assert shown.exit_code == 0, shown.output
    for line in [
        f"release     {record.release}  (production)",
        "git         https://git.example/llmflow @ abc123 (tag v1.2)",
        f"weights     s3://llmflow-models/a  {weights('a')['digest']}",
        "training    100 steps, final loss 0.2500, 900 tokens/s",
        "evaluation  gate FAILED, report s3://r/i.html",
        "            FAIL x/acc: -0.2",
        "canary      10% PASS",
        "canary      50% FAIL",
        "spec        namespace llmflow, source s3://m/tiny",
    ]:
        assert line in shown.output.splitlines(), line

    as_json = CliRunner().invoke(
        releases_group, ["show", MODEL, record.release, "--json", "--records", file_uri]
    )
    assert ReleaseRecord.model_validate_json(as_json.output) == record


def test_releases_show_without_production_says_what_to_give(file_uri: str) -> None:
    result = CliRunner().invoke(releases_group, ["show", MODEL, "--records", file_uri])
    assert result.exit_code == 2
    assert "has no production release" in result.output


def spec_file(tmp_path: Path, records: str) -> Path:
    data = yaml.safe_load((ROOT / "releases" / "tiny.yaml").read_text())
    data["records"] = {"uri": records}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_releases_list_reads_the_store_the_spec_names(tmp_path: Path, file_uri: str) -> None:
    (a,) = put_all(RecordStore.open(file_uri), "deploy-a")
    spec = spec_file(tmp_path, file_uri)
    result = CliRunner().invoke(releases_group, ["list", MODEL, "-f", str(spec)])
    assert result.exit_code == 0, result.output
    assert a.release in result.output
    both = CliRunner().invoke(
        releases_group, ["list", MODEL, "-f", str(spec), "--records", file_uri]
    )
    assert both.exit_code == 2 and "not both" in both.output


def test_rollback_without_previous_stops_before_deploying(tmp_path: Path, file_uri: str) -> None:
    store = RecordStore.open(file_uri)
    (a,) = put_all(store, "deploy-a")
    store.promote(MODEL, a.release)
    spec = spec_file(tmp_path, file_uri)

    result = CliRunner().invoke(releases_group, ["rollback", MODEL, "-f", str(spec), "--local"])
    assert result.exit_code == 2
    assert f"no previous release in {file_uri} (production: {a.release})" in result.output
    other = CliRunner().invoke(releases_group, ["rollback", "gpt", "-f", str(spec), "--local"])
    assert other.exit_code == 2 and "not the spec's model.name" in other.output
    assert store.aliases(MODEL).production == a.release


def test_a_succeeded_rollback_run_is_recorded_and_moves_the_aliases(
    tmp_path: Path, file_uri: str
) -> None:
    store = RecordStore.open(file_uri)
    a, b = put_all(store, "deploy-a", "deploy-b")
    store.promote(MODEL, a.release)
    store.promote(MODEL, b.release)
    state = store.aliases(MODEL)
    spec = load_spec(spec_file(tmp_path, file_uri))
    started = T0 + timedelta(days=1)

    run = RunResult("deploy-rb1", "Succeeded", outputs={"digest": weights("deploy-a")["digest"]})
    record = rollback_record(spec, a, b.release, run, started)
    store.put(record)
    moved = store.rollback(MODEL, to=record.release, expected=state)

    assert record.release == "20250302T120000Z-deploy-rb1"
    assert (record.outcome, record.reason) == ("production", f"rollback of {b.release}")
    assert record.weights == a.weights
    assert record.spec is not None and record.spec["records"]["uri"] == file_uri
    assert (moved.production, moved.previous) == (record.release, b.release)


def test_a_failed_rollback_run_is_recorded_and_leaves_the_aliases(
    tmp_path: Path, file_uri: str
) -> None:
    store = RecordStore.open(file_uri)
    a, b = put_all(store, "deploy-a", "deploy-b")
    store.promote(MODEL, a.release)
    store.promote(MODEL, b.release)
    spec = load_spec(spec_file(tmp_path, file_uri))

    run = RunResult("deploy-rb2", "Failed", message="analyse-10 failed: FAIL ttft")
    record = rollback_record(spec, a, b.release, run, T0 + timedelta(days=1))
    assert record.outcome == "failed"
    assert "analyse-10 failed: FAIL ttft" in record.reason
    store.put(record)
    with pytest.raises(RecordError, match="ended 'failed'"):
        store.rollback(MODEL, to=record.release)

    replaced = RunResult("deploy-rb3", "Succeeded", outputs={"digest": "sha256:" + "ff" * 32})
    other_bytes = rollback_record(spec, a, b.release, replaced, T0 + timedelta(days=2))
    store.put(other_bytes)
    with pytest.raises(RecordError, match="not the weights of previous"):
        store.rollback(MODEL, to=other_bytes.release)
    now = store.aliases(MODEL)
    assert (now.production, now.previous) == (b.release, a.release)


# The spec's records section ------------------------------------------------------------


def test_the_records_section_defaults_and_tiny_names_its_store() -> None:
    assert RecordsSection().uri == "s3://llmflow-releases"
    spec = load_spec(ROOT / "releases" / "tiny.yaml")
    assert spec.records.uri == "s3://llmflow-models/releases"
    assert parse_spec({"model": {"name": "m", "source": "s3://bkt/m"}}).records == RecordsSection()


@pytest.mark.parametrize(
    ("uri", "stored"),
    [
        ("s3://llmflow-releases/", "s3://llmflow-releases"),
        ("s3://bkt/a/b/", "s3://bkt/a/b"),
        ("file:///srv/records", "file:///srv/records"),
    ],
)
def test_the_records_section_accepts_buckets_prefixes_and_folders(uri: str, stored: str) -> None:
    assert RecordsSection(uri=uri).uri == stored


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"uri": "http://store/x"}, "records.uri = 'http://store/x': must be s3://bucket, "),
        ({"uri": "file://relative"}, "records.uri = 'file://relative': must be"),
        ({"uri": "s3://Upper"}, "records.uri = 's3://Upper': must be"),
        ({"url": "s3://bkt"}, "records.url"),
    ],
)
def test_the_records_section_names_a_bad_value(records: dict[str, str], message: str) -> None:
    data = {"model": {"name": "m", "source": "s3://bkt/m"}, "records": records}
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as raised:
        parse_spec(data)
    assert "records" in str(raised.value)


# The promotion path ---------------------------------------------------------------------

SHADOW_PASS = {
    "verdict": "PASS",
    "reason": "every check within tolerance under mirrored live traffic",
    "fraction": 0.5,
    "window_s": 41.2,
    "requests": {"stable": 310, "candidate": 152},
    "checks": {
        "live_ttft_p50": {"verdict": "PASS", "estimate": 0.9, "interval": [0.5, 1.6], "limit": 3},
        "live_error_rate": {"verdict": "PASS", "estimate": 0, "interval": [-0.01, 0.02]},
    },
}
CANARY_LAST = {"stage": 100, "verdict": "PASS", "reason": "probe: every check", "checks": {}}


def test_a_promoted_release_records_every_stage_with_its_evidence(file_uri: str) -> None:
    result = record_release(
        **step_inputs(  # type: ignore[arg-type]
            file_uri,
            shadow_evidence=json.dumps(SHADOW_PASS),
            canary_evidence=json.dumps(CANARY_LAST),
        )
    )
    record = ReleaseRecord.model_validate_json(read_object(result.record))
    assert record.stages is not None
    assert [(s.name, s.verdict) for s in record.stages] == [
        ("staging", "PASS"),
        ("shadow", "PASS"),
        ("canary", "PASS"),
        ("production", "PASS"),
    ]
    assert record.stages[0].evidence == {"decision": "PASS a\nPASS b"}
    assert record.stages[1].evidence == SHADOW_PASS
    assert record.stages[3].evidence == {"version": "v2", "digest": "sha256:" + "ab" * 32}

    shown = CliRunner().invoke(releases_group, ["show", MODEL, "--records", file_uri])
    assert shown.exit_code == 0, shown.output
    assert "path        staging PASS -> shadow PASS -> canary PASS -> production PASS" in (
        shown.output
    )
    assert "window 41.2 s, fraction 0.5, requests 152 candidate / 310 stable" in shown.output
    assert "live_ttft_p50 PASS [0.5, 1.6] limit 3" in shown.output


def test_a_release_stopped_in_its_shadow_records_why_and_moves_no_alias(file_uri: str) -> None:
    failed = {**SHADOW_PASS, "verdict": "FAIL", "reason": "regression shown by: live_ttft_p50"}
    result = record_release(
        **step_inputs(  # type: ignore[arg-type]
            file_uri,
            outcome="rolled-back",
            reason="the deploy stage failed",
            shadow_evidence=json.dumps(failed),
            canary=json.dumps({"mode": "", "version": ""}),
        )
    )
    record = ReleaseRecord.model_validate_json(read_object(result.record))
    assert record.stages is not None
    assert [(s.name, s.verdict) for s in record.stages] == [("staging", "PASS"), ("shadow", "FAIL")]
    assert record.stages[1].reason == "regression shown by: live_ttft_p50"
    assert RecordStore.open(file_uri).aliases(MODEL).production is None


@pytest.mark.parametrize(
    ("outcome", "evaluation", "canary", "expected"),
    [
        ("gate-failed", {"passed": "false"}, None, [("staging", "FAIL")]),
        (
            "rolled-back",
            {"passed": True},
            {"stage": 50, "verdict": "PASS"},  # passed 50%, the next stage never judged
            [("staging", "PASS"), ("canary", "FAIL")],
        ),
        (
            "failed",
            {"passed": True},
            {"stage": 100, "verdict": "PASS"},  # every stage passed, the promotion failed
            [("staging", "PASS"), ("canary", "PASS"), ("production", "FAIL")],
        ),
        ("failed", None, None, []),
    ],
)
def test_the_path_stops_where_the_release_did(
    outcome: str,
    evaluation: dict[str, Any] | None,
    canary: dict[str, Any] | None,
    expected: list[tuple[str, str]],
) -> None:
    path = promotion_path(outcome, "the deploy stage failed", evaluation, None, canary, None)
    assert [(s.name, s.verdict) for s in path] == expected
    if canary and canary["stage"] == 50:
        assert path[-1].reason == "stopped after 50%: the deploy stage failed"

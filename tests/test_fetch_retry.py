"""`fetch-weights` under Argo's retries: outages are ridden out, what cannot heal is not retried.

The step's exit code says whether a failure can heal (`steps.errors`), the template's
`retryStrategy` retries on it (`steps/_retry.py`), and `llmflow run` applies that strategy as
Argo's controller does; these tests run it all for real against s3rver, stopped and restarted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps._retry import PERMANENT_EXIT_CODES, RETRY_UNLESS_PERMANENT
from steps.errors import IntegrityError, SourceError, StepError, TransferError
from steps.weights.checksum import MiB
from tests.conftest import tree_bytes, upload
from workflows import fetch_weights as fetch_weights_pipeline
from workflows.exceptions import SpecError
from workflows.local.expr import evaluate, expression_env
from workflows.local.s3 import LocalS3
from workflows.spec import parse_spec

LLMFLOW = str(Path(sys.executable).parent / "llmflow")
OUTPUTS = ("path", "digest", "cache-hit", "downloaded-bytes")


def test_exit_codes_say_whether_a_failure_can_heal() -> None:
    errors = (StepError, SourceError, TransferError, IntegrityError)
    assert {e.__name__: e.exit_code for e in errors} == {
        "StepError": 1,  # as a crash: nobody classified it, so it is retried
        "SourceError": 66,
        "TransferError": 75,
        "IntegrityError": 76,
    }
    assert sorted(PERMANENT_EXIT_CODES) == [66, 76]
    # Argo's lastRetry.exitCode is a string; -1 is a pod lost before its container ended.
    for code, retried in [("66", False), ("76", False), ("75", True), ("1", True), ("-1", True)]:
        env = expression_env({"lastRetry.exitCode": code, "retries": "0"})
        assert evaluate(RETRY_UNLESS_PERMANENT, env) is retried, code


def retry_spec(**retry: Any) -> dict[str, Any]:
    return {"model": {"name": "tiny", "source": "s3://models/tiny", "cache": {"retry": retry}}}


def test_the_spec_sets_the_parameters_the_retry_strategy_reads() -> None:
    spec = parse_spec(retry_spec(limit=3, backoff=30, cap="5m"))
    workflow = fetch_weights_pipeline.build(spec).to_dict()
    given = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert {k: v for k, v in given.items() if k.startswith("fetch-retry-")} == {
        "fetch-retry-limit": "3",
        "fetch-retry-backoff": "30",  # whole seconds, as Argo reads a bare number
        "fetch-retry-factor": "2",
        "fetch-retry-cap": "5m",
    }
    [fetch] = [t for t in workflow["spec"]["templates"] if t["name"] == "fetch-weights"]
    assert fetch["retryStrategy"] == {
        "retryPolicy": "Always",
        "expression": 'lastRetry.exitCode not in ["66", "76"]',
        "limit": "{{workflow.parameters.fetch-retry-limit}}",
        "backoff": {
            "duration": "{{workflow.parameters.fetch-retry-backoff}}",
            "factor": "{{workflow.parameters.fetch-retry-factor}}",
            "cap": "{{workflow.parameters.fetch-retry-cap}}",
        },
    }


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"cap": "5s"}, "model.cache.retry: cap = '5s' is shorter than backoff = '10s'"),
        ({"backoff": "0s"}, "model.cache.retry.backoff = '0s': must be longer than 0"),
        ({"backoff": "soon"}, "model.cache.retry.backoff = 'soon': must be a duration such as"),
        ({"limit": -1}, "model.cache.retry.limit = -1: Input should be greater than or equal"),
        ({"factor": 1.5}, "model.cache.retry.factor = 1.5: Input should be a valid integer"),
        ({"retries": 3}, "model.cache.retry.retries: unknown field"),
    ],
)
def test_bad_retry_settings_name_the_field_and_the_fix(retry: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(retry_spec(**retry))
    assert message in str(info.value)


def run_step(tmp_path: Path, source: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The step as its pod runs it: Hera's runner, the inputs file Argo writes."""
    inputs = tmp_path / "inputs.json"
    values = {"source": source, "model-name": "tiny", "cache-root": str(tmp_path / "cache")}
    values.update({"verify": "stat", "concurrency": "4", "chunk-mib": "1"})  # Argo passes all
    inputs.write_text(json.dumps([{"name": k, "value": v} for k, v in values.items()]))
    return subprocess.run(
        [sys.executable, "-m", "hera.workflows.runner", "-e", "steps.fetch:fetch_weights"]
        + [str(inputs)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env, "hera__outputs_directory": str(tmp_path / "outputs")},
    )


@pytest.mark.parametrize(
    ("source", "stop_the_store", "code", "message"),
    [
        ("s3://nobucket/tiny", False, 66, "bucket 'nobucket' does not exist"),
        ("s3://models/tiny", True, 75, "cannot reach S3"),
    ],
)
def test_the_runner_exits_with_the_errors_code(
    tmp_path: Path, s3: LocalS3, source: str, stop_the_store: bool, code: int, message: str
) -> None:
    upload(s3.client(), "models", "tiny", {"config.json": b"{}"})
    if stop_the_store:
        s3.stop()
    done = run_step(tmp_path, source, s3.env())
    assert done.returncode == code, done.stderr
    [last] = done.stderr.strip().splitlines()[-1:]  # the log's tail: the node's message
    assert f"exit code {code}" in last and message in last
    assert done.stdout.strip() == ""
    # every declared output exists, so Argo's wait container has nothing to add
    for name in OUTPUTS:
        assert (tmp_path / "outputs" / "parameters" / name).is_file(), name


# --- `llmflow run fetch-weights` against a store that goes away ---------------------------------


def write_spec(tmp_path: Path) -> Path:
    """A release whose fetch goes one 1 MiB chunk at a time, retried after 2 s, 4 s, 4 s..."""
    spec = {
        "model": {
            "name": "big",
            "source": "s3://models/big",
            "cache": {
                "concurrency": 1,
                "chunk_mib": 1,
                "retry": {"limit": 10, "backoff": "2s", "factor": 2, "cap": "4s"},
            },
        }
    }
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_run(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LLMFLOW, "run", "fetch-weights", "-f", str(write_spec(tmp_path))]
        + ["--root", str(tmp_path / "root")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def fetch_nodes(root: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The run's status, the fetch's Retry node, and its attempts in order."""
    [run_dir] = (root / "runs").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    nodes = status["nodes"]
    [retry] = [n for n in nodes.values() if n["type"] == "Retry"]
    return status, retry, [nodes[c] for c in retry["children"]]


def outputs(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in node["outputs"]["parameters"]}


def wait_for_journal(volumes: Path, proc: subprocess.Popen[str]) -> Path:
    """The journal of the big file, once the run has started downloading it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(volumes.rglob("model.safetensors.journal"))
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"the download never started: {proc.communicate()}")


def test_a_store_down_for_20_s_mid_download_is_ridden_out(tmp_path: Path, s3: LocalS3) -> None:
    contents = {"model.safetensors": os.urandom(128 * MiB), "config.json": b'{"n": 1}'}
    upload(s3.client(), "models", "big", contents)
    proc = start_run(tmp_path, s3.env())
    try:
        journal = wait_for_journal(tmp_path / "root" / "volumes", proc)
        while proc.poll() is None and journal.read_text().count("\n") < 4:  # header + 3 chunks
            time.sleep(0.002)
        s3.kill()  # mid-download: connections drop, the port refuses
        time.sleep(20)
        s3.start()  # same port, same data folder
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    status, retry, attempts = fetch_nodes(tmp_path / "root")
    assert status["phase"] == "Succeeded" and retry["phase"] == "Succeeded"
    assert len(attempts) > 1
    assert attempts[0]["phase"] == "Failed" and attempts[0]["outputs"]["exitCode"] == "75"
    assert all(a["outputs"]["exitCode"] == "75" for a in attempts[:-1])
    assert attempts[-1]["phase"] == "Succeeded"
    fetched = outputs(attempts[-1])
    total = sum(map(len, contents.values()))
    # the last attempt kept what the first one finished before the store went away
    assert 3 * MiB <= total - int(fetched["downloaded-bytes"]) < total
    assert tree_bytes(Path(fetched["path"])) == contents


def test_a_wrong_access_key_fails_on_the_first_attempt(tmp_path: Path, s3: LocalS3) -> None:
    upload(s3.client(), "models", "big", {"config.json": b"{}"})
    proc = start_run(tmp_path, {**s3.env(), "AWS_ACCESS_KEY_ID": "NOT-A-KEY"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    status, retry, attempts = fetch_nodes(tmp_path / "root")
    assert status["phase"] == "Failed"
    [attempt] = attempts
    assert attempt["phase"] == "Failed" and attempt["outputs"]["exitCode"] == "66"
    assert retry["message"] == "retryStrategy.expression evaluated to false"
    last = status["message"].splitlines()[-1]  # the step's log ends with why, and the code
    assert "exit code 66 (cannot heal: not retried)" in last
    assert "S3 refused the credentials (InvalidAccessKeyId)" in last
    assert "S3RVER" not in json.dumps(status)  # the secret key stays out of the record


@pytest.mark.parametrize("status", [503, 500, 429])
def test_a_store_that_answers_busy_is_transient(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy in failover answers 5xx or 429: retried, where a refusal (403) is not."""
    import http.server
    import threading

    from steps.weights.sources import open_source

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        with pytest.raises(TransferError, match="S3 is unavailable"):
            open_source("s3://models/m").list_files()
    finally:
        server.shutdown()

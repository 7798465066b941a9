"""Phases as Argo's controller decides them, beyond Argo's own e2e cases.

Task names sort against their dependency order on purpose (`a` runs last), so a scheduler that
walks tasks alphabetically cannot pass by luck.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hera.workflows import DAG, Steps, Task, Workflow
from hera.workflows.models import ContinueOn, RetryStrategy

from tests.engine_helpers import by_name, execute, py
from workflows.exceptions import UnsupportedFeature
from workflows.local.engine import Run, RunOptions
from workflows.local.s3 import free_port

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(sys.executable).parent / "llmflow")


def test_an_omitted_leaf_inherits_its_failed_parent(tmp_path: Path) -> None:
    with Workflow(name="inherit", entrypoint="main") as w:
        fail = py("fail", "import sys; sys.exit(4)")
        ok = py("ok", "print('ok')")
        with DAG(name="main"):
            fail(name="z")
            Task(name="b", template=ok, depends="z.Failed")
            Task(name="m", template=ok, depends="z")
            Task(name="a", template=ok, depends="m")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    phases = {name: nodes[name].phase for name in ("z", "b", "m", "a")}
    assert phases == {"z": "Failed", "b": "Succeeded", "m": "Omitted", "a": "Omitted"}
    # Leaves b and a decide; a is omitted below the failed z, so the DAG fails (Argo's rule).
    assert run.phase == "Failed"
    assert run.message.startswith(f"child '{nodes['z'].id}' failed")
    assert "exit code 4" in run.message


def test_a_failure_below_the_first_task_omits_the_chain_without_a_cycle(tmp_path: Path) -> None:
    with Workflow(name="chain", entrypoint="main") as w:
        fail = py("fail", "import sys; sys.stderr.write('source unreachable\\n'); sys.exit(3)")
        ok = py("ok", "print('ok')")
        with DAG(name="main"):
            fail(name="c-fetch") >> ok(name="b-train") >> ok(name="a-record")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert [nodes[n].phase for n in ("c-fetch", "b-train", "a-record")] == [
        "Failed",
        "Omitted",
        "Omitted",
    ]
    assert run.phase == "Failed" and "cycle" not in run.message
    assert run.message == f"child '{nodes['c-fetch'].id}' failed: main: Error (exit code 3)"


def test_continue_on_lets_a_failed_leaf_pass(tmp_path: Path) -> None:
    with Workflow(name="continue", entrypoint="main") as w:
        fail = py("fail", "import sys; sys.exit(1)")
        ok = py("ok", "print('ok')")
        with Steps(name="steps"):
            fail(name="s", continue_on=ContinueOn(failed=True))
        with DAG(name="main"):
            fail(name="z", continue_on=ContinueOn(failed=True))
            Task(name="a", template=ok, dependencies=["z"])
            Task(name="y", template="steps")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert nodes["z"].phase == "Failed" and nodes["a"].phase == "Succeeded"
    assert nodes["s"].phase == "Failed" and nodes["y"].phase == "Succeeded"
    assert run.phase == "Succeeded"


def test_targets_run_only_their_ancestors(tmp_path: Path) -> None:
    with Workflow(name="targets", entrypoint="main") as w:
        ok = py("ok", "print('ok')")
        with DAG(name="main", target="c"):
            a, b, c, d = ok(name="a"), ok(name="b"), ok(name="c"), ok(name="d")
            a >> [b, c]
            b >> d
    run = execute(w, tmp_path)
    assert run.phase == "Succeeded"
    assert sorted(by_name(run)) == ["a", "c", "targets"]


def test_template_fail_fast_stops_new_children(tmp_path: Path) -> None:
    with Workflow(name="failfast", entrypoint="main") as w:
        fail = py("fail", "import sys; sys.exit(1)")
        ok = py("ok", "print('ok')")
        with DAG(name="main", parallelism=1, fail_fast=True):
            fail(name="a")
            ok(name="b")
            ok(name="c")
    run = execute(w, tmp_path)
    assert run.phase == "Failed"
    assert run.message == "template has failed or errored children and failFast enabled"
    assert sorted(by_name(run)) == ["a", "failfast"]


def test_workflow_retry_strategy_wraps_every_template(tmp_path: Path) -> None:
    with Workflow(name="wfretry", entrypoint="main", retry_strategy=RetryStrategy(limit="1")) as w:
        fail = py("fail", "import sys; sys.exit(1)")
        with DAG(name="main"):
            fail(name="a")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert nodes["wfretry"].type == "Retry" and "wfretry(0)" in nodes
    assert nodes["a"].type == "Retry" and {"a(0)", "a(1)"} <= set(nodes)
    assert nodes["a"].message == "No more retries left"
    assert run.phase == "Failed"


def test_sequences_and_expressions(tmp_path: Path) -> None:
    with Workflow(name="seq", entrypoint="main", arguments={"n": "3"}) as w:
        echo = py("echo", "import sys; print(sys.argv[1])", inputs=["x"])
        echo.args = ["{{inputs.parameters.x}}"]
        with DAG(name="main"):
            echo(
                name="each",
                arguments={"x": "{{=asInt(item) * 10}}"},
                with_sequence={"count": "{{workflow.parameters.n}}", "start": "1"},
            )
            echo(name="never", arguments={"x": "1"}, when="{{=workflow.parameters.n == '4'}}")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert run.phase == "Succeeded"
    results = sorted(nodes[f"each({i}:{i + 1})"].outputs["result"] for i in range(3))
    assert results == ["10", "20", "30"]
    assert nodes["never"].phase == "Skipped"


def test_a_container_without_command_needs_its_image_mapped(tmp_path: Path) -> None:
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "entry"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {"name": "main", "container": {"image": "example/say:1", "args": ["hi"]}}
            ],
        },
    }
    with pytest.raises(UnsupportedFeature, match=r"image 'example/say:1' is not in the image map"):
        Run(workflow, RunOptions(root=tmp_path))
    run = Run(workflow, RunOptions(root=tmp_path, images={"example/say:1": ["echo", "say:"]}))
    assert run.execute() == "Succeeded"
    assert by_name(run)["entry"].outputs["result"] == "say: hi"


def test_image_map_from_the_root_folder_and_the_option(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        json.dumps(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {"name": "mapped"},
                "spec": {
                    "entrypoint": "main",
                    "templates": [{"name": "main", "container": {"image": "x/y", "args": ["a"]}}],
                },
            }
        )
    )
    root = tmp_path / "root"
    command = [LLMFLOW, "run", "--file", str(wf), "--root", str(root)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--image-map" in refused.stderr
    root.mkdir()
    (root / "images.yaml").write_text('x/y:latest: ["echo", "from-root"]\n')
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("x/y: echo\n")
    refused = subprocess.run(
        [*command, "--image-map", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "is not a non-empty list of strings" in refused.stderr


def test_finetune_with_an_unreachable_source_fails_with_the_step_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    root = tmp_path / "root"
    # One retry a second later, set for this run as the Argo UI would, instead of minutes.
    retry = ["--set", "fetch-retry-limit=1", "--set", "fetch-retry-backoff=1s"]
    result = subprocess.run(
        [LLMFLOW, "run", "finetune", "-f", "releases/tiny.yaml", "--root", str(root), *retry],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 1
    [status_file] = root.glob("runs/*/status.json")
    status = json.loads(status_file.read_text())
    assert status["phase"] == "Failed"
    assert "cycle" not in status["message"]
    # a store that cannot be reached may come back: exit code 75, retried until the limit
    assert "cannot reach S3" in status["message"] and "exit code 75" in status["message"]
    phases = {n["displayName"]: n["phase"] for n in status["nodes"].values()}
    assert phases["fetch-weights"] == phases["fetch-weights(0)"] == "Failed"
    assert phases["fetch-weights(1)"] == "Failed" and "fetch-weights(2)" not in phases
    assert phases["train"] == phases["record-training"] == "Omitted"

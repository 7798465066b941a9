"""`llmflow run` and `llmflow runs` as a user types them, with real processes and a real S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from click.testing import CliRunner

from tests.processes import running
from workflows.cli import main
from workflows.local.s3 import upload_folder

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(sys.executable).parent / "llmflow")


def test_fetch_weights_runs_locally_against_s3(tmp_path, s3, tiny_model, monkeypatch) -> None:
    s3.client().create_bucket(Bucket="llmflow-models")
    upload_folder(s3.client(), tiny_model, "llmflow-models", "tiny-llama")
    monkeypatch.chdir(ROOT)
    root = tmp_path / "root"
    result = subprocess.run(
        [LLMFLOW, "run", "fetch-weights", "-f", "releases/tiny.yaml", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **s3.env()},
    )
    assert result.returncode == 0, result.stderr
    [run_dir] = (root / "runs").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    assert {n["phase"] for n in status["nodes"].values()} == {"Succeeded"}
    step = next(n for n in status["nodes"].values() if n["templateName"] == "fetch-weights")
    outputs = {p["name"]: p["value"] for p in step["outputs"]["parameters"]}
    cache = Path(outputs["path"])
    assert cache.is_relative_to(root / "volumes" / "pvc" / "llmflow-model-cache" / "tiny-llama")
    assert (cache / "model.safetensors").read_bytes() == (
        tiny_model / "model.safetensors"
    ).read_bytes()
    assert outputs["digest"].startswith("sha256:") and outputs["cache-hit"] == "false"
    assert "S3RVER" not in (run_dir / "status.json").read_text()

    shown = CliRunner().invoke(main, ["runs", "--root", str(root), "get", run_dir.name])
    assert shown.exit_code == 0
    assert f"✔ {run_dir.name}  Succeeded" in shown.output
    assert "✔ fetch-weights  fetch-weights" in shown.output
    assert f"digest = {outputs['digest']}" in shown.output
    listed = CliRunner().invoke(main, ["runs", "--root", str(root), "list"])
    assert run_dir.name in listed.output and "Succeeded" in listed.output
    logs = CliRunner().invoke(main, ["runs", "--root", str(root), "logs", run_dir.name])
    assert "fetch tiny-llama" in logs.output or "tiny-llama: sha256:" in logs.output


def test_run_exit_code_follows_the_workflow(tmp_path) -> None:
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "exit-code"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "code", "value": "0"}]},
            "templates": [
                {
                    "name": "main",
                    "container": {
                        "image": "python",
                        "command": ["python", "-c"],
                        "args": ["import sys; sys.exit(int('{{workflow.parameters.code}}'))"],
                    },
                }
            ],
        },
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    ok = CliRunner().invoke(main, ["run", "--file", str(path), "--root", str(tmp_path / "a")])
    assert ok.exit_code == 0
    bad = CliRunner().invoke(
        main, ["run", "--file", str(path), "--root", str(tmp_path / "b"), "--set", "code=4"]
    )
    assert bad.exit_code == 1
    missing = CliRunner().invoke(main, ["run", "--file", str(path), "--set", "nope=1"])
    assert missing.exit_code == 2 and "no such workflow parameter" in missing.output


def sleeper_with_exit_handler(name: str, exit_code: str) -> dict:
    """A workflow whose main step sleeps, with an exit handler running `exit_code`."""

    def container(code: str) -> dict:
        return {"image": "python", "command": ["python", "-c"], "args": [code]}

    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "main",
            "onExit": "bye",
            "templates": [
                {"name": "main", "container": container("import time; time.sleep(120)")},
                {"name": "bye", "container": container(exit_code)},
            ],
        },
    }


def start_running(tmp_path: Path, workflow: dict) -> tuple[subprocess.Popen, Path]:
    """`llmflow run --file` in a subprocess, returned once its main step runs."""
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    proc = subprocess.Popen(
        [LLMFLOW, "run", "--file", str(path), "--root", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status_file = tmp_path / "runs" / workflow["metadata"]["name"] / "status.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        status_file.exists() and '"Running"' in status_file.read_text()
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, status_file


def test_ctrl_c_stops_cleanly(tmp_path) -> None:
    workflow = sleeper_with_exit_handler("interrupted", "print('{{workflow.status}}')")
    proc, status_file = start_running(tmp_path, workflow)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 1
    status = json.loads(status_file.read_text())
    assert status["phase"] == "Failed" and status["message"] == "Stopped by user (Ctrl-C)"
    bye = next(n for n in status["nodes"].values() if n["name"] == "interrupted.onExit")
    assert bye["phase"] == "Succeeded" and bye["outputs"]["result"] == "Failed"
    root = status["nodes"]["interrupted"]
    assert root["phase"] == "Failed"


def test_a_second_ctrl_c_aborts_and_leaves_no_process(tmp_path) -> None:
    pid_file = tmp_path / "bye.pid"
    hang = f"import os, time; open('{pid_file}', 'w').write(str(os.getpid())); time.sleep(120)"
    proc, _ = start_running(tmp_path, sleeper_with_exit_handler("aborted", hang))
    proc.send_signal(signal.SIGINT)  # stop: the exit handler starts and hangs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pid_file.exists():
        time.sleep(0.1)
    assert pid_file.exists(), "the exit handler did not start"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # abort
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(pid):
        time.sleep(0.1)
    assert not running(pid), "the exit handler's process outlived the aborted run"

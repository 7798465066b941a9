"""`make demo` end to end: tiny model -> local S3 -> fetch -> fine-tune -> evaluate -> deploy."""

from pathlib import Path

import pytest

from steps.weights.cache import Manifest
from workflows.demo import run_demo
from workflows.local.kinds.overview import down, status

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1500)  # the whole lifecycle, three vLLM starts included
def test_demo_runs_the_lifecycle(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.setenv(key, "")  # restored after the test; the demo sets its own
    try:
        outputs = run_demo(ROOT / "releases" / "tiny.yaml", tmp_path / "demo", tmp_path / "root")
        serving = status(tmp_path / "root")
    finally:
        down(tmp_path / "root")  # the demo leaves the model served; the suite leaves nothing
    path = Path(outputs["path"])
    assert path.is_relative_to(tmp_path / "root" / "volumes" / "pvc" / "llmflow-model-cache")
    manifest = Manifest.from_json((path / ".llmflow" / "manifest.json").read_text())
    assert outputs["digest"] == manifest.digest and outputs["digest"].startswith("sha256:")
    assert outputs["cache-hit"] == "false"
    assert {f.path for f in manifest.files} >= {"config.json", "model.safetensors"}
    assert (path / "model.safetensors").read_bytes() == (
        tmp_path / "demo" / "tiny-model" / "model.safetensors"
    ).read_bytes()
    assert outputs["checkpoint"].startswith(
        "s3://llmflow-models/tiny-llama-ft/finetune-tiny-llama-"
    )
    assert float(outputs["final-loss"]) < 3.0
    assert (tmp_path / "demo" / "fine-tuned" / "model.safetensors").is_file()
    # The fine-tuned model passes the evaluation gate against the base model, with a report.
    assert outputs["passed"] == "true"
    report = Path(outputs["report"])
    assert report.is_relative_to(tmp_path / "root" / "runs") and report.name == "index.html"
    assert (report.parent / "gate.png").is_file() and "PASS" in report.read_text()
    # The fine-tuned model was promoted through the canary and answers through the gateway.
    assert outputs["answer"].strip() == "7"
    assert outputs["gateway"] in serving["gateways"].values()
    [deployment] = [o for o in serving["objects"] if o["kind"] == "Deployment"]
    assert deployment["name"] == "tiny-llama-stable" and deployment["ready"] == "1/1"
    assert deployment["version"] == outputs["version"]

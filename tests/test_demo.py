"""`make demo` end to end: the release pipeline takes the tiny model to production, twice.

The first release (fetch, images, fine-tune, evaluate, shadow, canary) reaches production; the
second, a candidate served with `--max-num-seqs 1`, fails its shadow and is rolled back before
any user was served by it, and production stays the first.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from steps.releases import RecordStore
from workflows.cli import main
from workflows.demo import run_demo
from workflows.local.kinds.overview import down, status

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(2700)  # two releases, four vLLM starts and two image builds' worth
def test_demo_releases_and_rolls_back(tmp_path: Path, monkeypatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.setenv(key, "")  # restored after the test; the demo sets its own
    root = tmp_path / "root"
    try:
        outputs = run_demo(ROOT / "releases" / "tiny.yaml", tmp_path / "demo", root)
        serving = status(root)
    finally:
        down(root)  # the demo leaves the model served; the suite leaves nothing
    # The fine-tuned model serves all traffic and answers through the gateway.
    assert outputs["answer"].strip() == "7"
    assert outputs["gateway"] in serving["gateways"].values()
    [deployment] = [o for o in serving["objects"] if o["kind"] == "Deployment"]
    assert deployment["name"] == "tiny-llama-stable" and deployment["ready"] == "1/1"
    assert deployment["version"] == outputs["version"]
    routes = [o for o in serving["objects"] if o["kind"] == "HTTPRoute"]
    assert routes and all("canary" not in json.dumps(r) for r in routes)

    # The bad release was rolled back in its shadow, and said why: latency under the users'
    # mirrored requests. The users, whose requests were mirrored to it, saw no failure.
    assert "release rolled-back" in outputs["second_message"]
    artifacts = root / "runs" / outputs["second"] / "artifacts"
    [shadow] = [json.loads(p.read_text()) for p in artifacts.rglob("shadow.json")]
    # FAIL (shown beyond tolerance) or INCONCLUSIVE (not shown within it) both stop it: its
    # median time to first token is not shown within tolerance, and is above stable's.
    assert shadow["verdict"] in ("FAIL", "INCONCLUSIVE"), shadow["reason"]
    ttft = shadow["live"]["checks"]["live_ttft_p50"]
    assert ttft["verdict"] != "PASS" and ttft["estimate"] > 1, ttft
    assert not list(artifacts.rglob("stage-*.json"))  # no canary stage: no user served by it
    [passed] = [
        json.loads(p.read_text())
        for p in (root / "runs" / outputs["first"] / "artifacts").rglob("shadow.json")
    ]
    assert passed["verdict"] == "PASS"
    assert outputs["shadow_windows"] == "2"
    assert outputs["user_errors"] == "0" and int(outputs["user_answers"]) > 100
    store = RecordStore.open(outputs["records"])
    records = {r.workflow.name: r for r in store.list("tiny-llama") if r.workflow}
    first, second = records[outputs["first"]], records[outputs["second"]]
    assert first.outcome == "production" and second.outcome == "rolled-back"
    assert first.weights is not None and first.weights.uri == outputs["checkpoint"]
    assert first.evaluation is not None and first.evaluation.passed
    assert first.images and set(first.images) == {"steps", "serving"}
    # Each record keeps its promotion path, with the evidence of every stage.
    assert first.stages is not None and second.stages is not None
    assert [(s.name, s.verdict) for s in first.stages] == [
        ("staging", "PASS"),
        ("shadow", "PASS"),
        ("canary", "PASS"),
        ("production", "PASS"),
    ]
    assert [s.name for s in second.stages] == ["staging", "shadow"]
    assert second.stages[1].verdict in ("FAIL", "INCONCLUSIVE")
    assert second.stages[1].evidence and second.stages[1].evidence["checks"]
    production = store.alias("tiny-llama", "production")
    assert production is not None and production.release == first.release

    # `llmflow releases show tiny-llama` prints the last good release.
    shown = CliRunner().invoke(
        main, ["releases", "show", "tiny-llama", "--records", outputs["records"]]
    )
    assert shown.exit_code == 0, shown.output
    assert first.release in shown.output and "production" in shown.output
    assert "staging PASS -> shadow PASS -> canary PASS -> production PASS" in shown.output
    assert int(outputs["reports"]) >= 4  # gate page and chart, canary charts of both

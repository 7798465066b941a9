"""The evaluate pipeline through `llmflow run`, with real lm-eval on CPU and the tiny model.

The fine-tuned tiny model must pass the gate against the base model as reference, and the
base model must fail it against the fine-tuned one; the second run reuses both models'
results from the first, since their weights, suite and settings are the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from workflows.cli import main
from workflows.render import render
from workflows.spec import load_spec
from workflows.validation import validate_documents

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(sys.executable).parent / "llmflow")


def run_evaluate(root: Path, evals: Path, candidate: Path, reference: Path) -> dict[str, Any]:
    before = set((root / "runs").glob("*")) if (root / "runs").exists() else set()
    result = subprocess.run(
        [
            *(LLMFLOW, "run", "evaluate", "-f", "releases/tiny.yaml", "--root", str(root)),
            *("--set", f"candidate=file://{candidate}", "--set", f"reference=file://{reference}"),
            *("--set", f"eval-output=file://{evals}"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = set((root / "runs").glob("*")) - before
    status = json.loads((run_dir / "status.json").read_text())
    nodes = {n["displayName"]: n for n in status["nodes"].values()}
    return {"dir": run_dir, "status": status, "nodes": nodes}


def outputs(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in node["outputs"]["parameters"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, fine_tuned: Path) -> dict:
    root = tmp_path_factory.mktemp("engine")
    evals = tmp_path_factory.mktemp("evals")
    good = run_evaluate(root, evals, candidate=fine_tuned, reference=tiny_model)
    bad = run_evaluate(root, evals, candidate=tiny_model, reference=fine_tuned)
    return {"root": root, "evals": evals, "good": good, "bad": bad}


def test_the_fine_tuned_model_passes_and_the_base_model_fails(runs: dict) -> None:
    good, bad = runs["good"], runs["bad"]
    assert good["status"]["phase"] == bad["status"]["phase"] == "Succeeded"
    passed = outputs(good["nodes"]["gate-evaluation"])
    assert passed["passed"] == "true"
    assert passed["decision"].count("PASS") == 2 and "lower bound" in passed["decision"]
    failed = outputs(bad["nodes"]["gate-evaluation"])
    assert failed["passed"] == "false"
    assert "FAIL tiny_instructions_mc/acc" in failed["decision"]


def test_the_report_is_in_the_run_folder_and_the_output(runs: dict) -> None:
    good = runs["good"]
    gate = good["nodes"]["gate-evaluation"]
    folder = good["dir"] / "artifacts" / gate["id"] / "report"
    page = (folder / "index.html").read_text()
    assert 'Evaluation gate: <span class="PASS">PASS</span>' in page
    assert "tiny_instructions_gen/exact_match" in page and "gate.png" in page
    assert (folder / "gate.png").read_bytes().startswith(b"\x89PNG")
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["passed"] is True and len(decision["gates"]) == 2
    mc = next(g for g in decision["gates"] if g["metric"] == "tiny_instructions_mc/acc")
    assert mc["n"] == 100 and mc["lower"] > -0.05 and mc["candidate_mean"] > mc["reference_mean"]
    assert decision["provenance"]["harness"]["name"] == "lm-eval"
    uploaded = runs["evals"] / good["status"]["metadata"]["name"] / "gate" / "index.html"
    assert uploaded.read_text() == page


def test_results_of_the_same_weights_and_settings_are_reused(runs: dict) -> None:
    first, second = runs["good"]["nodes"], runs["bad"]["nodes"]
    assert outputs(first["evaluate-candidate"])["reused"] == "false"
    assert outputs(second["evaluate-candidate"])["reused"] == "true"
    assert outputs(second["evaluate-reference"])["reused"] == "true"
    # The reused scores are the ones measured before, for the same content digest.
    assert (
        outputs(second["evaluate-reference"])["metrics"]
        == outputs(first["evaluate-candidate"])["metrics"]
    )


def test_runs_get_shows_the_decision_with_its_interval(runs: dict) -> None:
    name = runs["good"]["status"]["metadata"]["name"]
    shown = CliRunner().invoke(main, ["runs", "--root", str(runs["root"]), "get", name])
    assert shown.exit_code == 0
    assert "passed = true" in shown.output
    assert "95% lower bound" in shown.output


def test_the_pipeline_renders_to_a_valid_workflow(registry) -> None:
    workflow = render("evaluate", load_spec(ROOT / "releases" / "tiny.yaml"))
    problems = validate_documents([("evaluate", workflow)], registry)
    assert not problems, problems
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert templates["gate-evaluation"]["outputs"]["artifacts"][0]["name"] == "report"
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert set(tasks) == {
        "fetch-candidate",
        "fetch-reference",
        "evaluate-candidate",
        "evaluate-reference",
        "gate-evaluation",
        "require-gate",
    }
    # A failed gate fails the workflow only when asked to (a schedule watching production).
    assert tasks["require-gate"]["when"].startswith("{{workflow.parameters.fail-on-gate}} == true")
    # Candidate and reference are evaluated in parallel: neither depends on the other.
    assert "evaluate-reference" not in tasks["evaluate-candidate"].get("depends", "")

"""Argo's own end-to-end workflows, run with `llmflow run --file`, against what Argo's tests assert.

The corpus lives beside the project (`../shared/argo-conformance/`: `manifest.yaml` and
`cases/`) and is read from there, never copied. Each runnable case must end in the phase Argo's
Go test waits for, with the asserted message, node phases, types, parameters and counts;
`unsupported` cases are refused before anything runs, naming the feature (a `templateRef` case,
whose WorkflowTemplate the corpus does not hold, naming the missing template); `invalid` cases are
refused by `llmflow lint` and at load, with Argo's message. Further corpora of the same format
can be added with LLMFLOW_CONFORMANCE=dir1:dir2.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workflows.cli import main

ROOT = Path(__file__).resolve().parents[1]
CORPORA = [
    ROOT.parent / "shared" / "argo-conformance",
    *(Path(p) for p in os.environ.get("LLMFLOW_CONFORMANCE", "").split(os.pathsep) if p),
]
#: The argoproj/argosay:v2 entrypoint, written from the corpus README's table.
ARGOSAY = Path(__file__).parent / "argo" / "argosay"


def _cases() -> list[Any]:
    cases = []
    for corpus in CORPORA:
        manifest = corpus / "manifest.yaml"
        if not manifest.is_file():
            cases.append(pytest.param(corpus, {}, id=f"missing:{corpus}"))
            continue
        for case in yaml.safe_load(manifest.read_text())["cases"]:
            cases.append(pytest.param(corpus, case, id=f"{case['expect']}:{case['file']}"))
    return cases


@pytest.fixture
def llmflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the CLI in-process with the argosay image mapped and Debian's cowsay on PATH."""
    image_map = tmp_path / "images.yaml"
    image_map.write_text(yaml.safe_dump({"argoproj/argosay:v2": [str(ARGOSAY)]}))
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}{os.pathsep}/usr/games")
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(main, [*args], catch_exceptions=False)

    invoke.image_map = image_map  # type: ignore[attr-defined]
    invoke.root = tmp_path / "root"  # type: ignore[attr-defined]
    return invoke


@pytest.mark.parametrize(("corpus", "case"), _cases())
def test_argo_e2e_case(corpus: Path, case: dict[str, Any], llmflow: Any) -> None:
    if not case:
        pytest.fail(f"conformance corpus missing: {corpus}/manifest.yaml (expected ../shared)")
    path = corpus / "cases" / case["file"]
    run_args = ["run", "--file", str(path), "--image-map", str(llmflow.image_map)]
    run_args += ["--root", str(llmflow.root)]
    if case["expect"] == "unsupported":
        result = llmflow(*run_args)
        assert result.exit_code != 0
        feature = case["unsupported_feature"].split()[0]
        assert feature in result.output, result.output
        # templateRefs run locally once their WorkflowTemplate is applied; none is, here.
        by_reference = feature in ("templateRef", "workflowTemplateRef")
        refusal = "no WorkflowTemplate" if by_reference else "not supported"
        assert refusal in result.output, result.output
        assert not (llmflow.root / "runs").exists(), "nothing may run for an unsupported case"
        return
    if case["expect"] == "invalid":
        expected = case["message"]["contains"]
        lint = llmflow("lint", str(path), "--schemas", str(ROOT.parent / "shared" / "schemas"))
        assert lint.exit_code == 1 and expected in lint.output, lint.output
        result = llmflow(*run_args)
        assert result.exit_code != 0 and expected in result.output, result.output
        assert not (llmflow.root / "runs").exists(), "nothing may run for an invalid case"
        return
    result = llmflow(*run_args)
    status = _status(llmflow.root)
    context = f"{case['file']}: {status.get('phase')} {status.get('message')!r}\n{result.output}"
    assert status["phase"] == case["expect"], context
    assert (result.exit_code == 0) == (case["expect"] == "Succeeded"), context
    message = case.get("message") or {}
    if "equals" in message:
        assert status["message"] == message["equals"], context
    if "contains" in message:
        assert message["contains"] in status["message"], context
    for expected in case.get("nodes") or []:
        _check_node(status, expected, context)
    for assertion in case.get("other_assertions") or []:
        _check_other(status, assertion, context)


def _status(root: Path) -> dict[str, Any]:
    runs = list((root / "runs").glob("*/status.json"))
    assert len(runs) == 1, f"expected one run under {root}, found {runs}"
    return dict(json.loads(runs[0].read_text()))


def _check_node(status: dict[str, Any], expected: dict[str, Any], context: str) -> None:
    nodes = list(status["nodes"].values())
    if "display_name" in expected:
        found = [n for n in nodes if n["displayName"] == expected["display_name"]]
    elif "name" in expected:
        found = [n for n in nodes if n["name"] == expected["name"]]
    else:
        found = [n for n in nodes if n["phase"] == expected.get("phase")]
        found = [n for n in found if expected.get("message_contains", "") in n.get("message", "")]
    where = f"node {expected}: {context}"
    if expected.get("exists") is False:
        assert not found, where
        return
    assert found, where
    node = found[0]
    checks = {
        "phase": lambda v: node["phase"] == v,
        "type_not": lambda v: node["type"] != v,
        "message": lambda v: node.get("message", "") == v,
        "message_contains": lambda v: v in node.get("message", ""),
        "input_parameters": lambda v: _values(node, "inputs") == v,
        "output_parameters": lambda v: _values(node, "outputs") == v,
        "children_count": lambda v: len(node.get("children") or []) == v,
        "outputs_exit_code": lambda v: "exitCode" in (node.get("outputs") or {}),
        "outputs_result": lambda v: "result" in (node.get("outputs") or {}),
    }
    for key, value in expected.items():
        if key in checks:
            assert checks[key](value), f"{key} != {value!r} for {node}\n{where}"


def _values(node: dict[str, Any], kind: str) -> list[str]:
    return [p.get("value") for p in (node.get(kind) or {}).get("parameters") or []]


def _check_other(status: dict[str, Any], assertion: str, context: str) -> None:
    if match := re.match(r"len\(status\.nodes\) == (\d+)", assertion):
        assert len(status["nodes"]) == int(match[1]), f"{assertion}: {context}"
    elif match := re.match(r'status\.progress == "(.+)"', assertion):
        assert status["progress"] == match[1], f"{assertion}: {context}"
    elif match := re.match(r'root node progress == "(.+)"', assertion):
        root = status["nodes"][status["metadata"]["name"]]
        assert root["progress"] == match[1], f"{assertion}: {context}"
    else:
        pytest.fail(f"the test cannot check {assertion!r} yet: {context}")

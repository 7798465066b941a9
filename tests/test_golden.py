"""Every pipeline renders, with the example spec, to its committed golden YAML.

Regenerate after an intended change with `make golden` (REGENERATE=1); never under CI.
"""

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.pipelines import discover
from workflows.render import render, to_yaml
from workflows.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
SPEC = ROOT / "releases" / "tiny.yaml"


def normalise(manifest: dict[str, Any]) -> dict[str, Any]:
    """Key order and template order carry no meaning; compare without them."""
    spec = manifest.get("spec", {})
    templates = sorted(spec.get("templates", []), key=lambda t: t["name"])
    return {**manifest, "spec": {**spec, "templates": templates}}


def test_pipelines_are_discovered() -> None:
    assert "fetch-weights" in discover()


@pytest.mark.parametrize("name", sorted(discover()))
def test_pipeline_matches_golden(name: str) -> None:
    rendered = render(name, load_spec(SPEC))
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("REGENERATE") and not os.environ.get("CI"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(to_yaml(rendered))
    if not golden.exists():
        pytest.fail(f"{golden} missing; run `make golden` and commit it")
    assert normalise(rendered) == normalise(yaml.safe_load(golden.read_text())), (
        f"{name} no longer renders to {golden.name}; if intended, run `make golden`"
    )


@pytest.mark.parametrize("name", sorted(discover()))
def test_golden_files_pass_strict_validation(name: str, registry) -> None:
    from workflows.validation import validate_files

    assert validate_files([GOLDEN / f"{name}.yaml"], registry) == []

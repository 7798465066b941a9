"""Render pipelines to Argo YAML: the one compiled form that `submit` sends and `run` executes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workflows.pipelines import get_pipeline
from workflows.spec import ReleaseSpec


def render(pipeline: str, spec: ReleaseSpec) -> dict[str, Any]:
    """The Argo Workflow of a pipeline for a spec, as a plain dict."""
    return get_pipeline(pipeline).build(spec).to_dict()


def to_yaml(manifest: dict[str, Any]) -> str:
    """YAML as `kubectl` users expect it: block style, keys in the order Hera emits them."""
    return yaml.safe_dump(manifest, sort_keys=False, width=100)


def write(pipeline: str, spec: ReleaseSpec, out_dir: str | Path) -> Path:
    """Render a pipeline into `out_dir/<pipeline>.yaml`; returns the file's path."""
    path = Path(out_dir) / f"{pipeline}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(render(pipeline, spec)))
    return path

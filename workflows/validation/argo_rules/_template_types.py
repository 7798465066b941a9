"""Template types as Argo's GetType reads them, and the paths a template's type gives it."""

from __future__ import annotations

from typing import Any

from workflows.validation.argo_rules._yaml import as_dict, as_dicts, as_str

#: GetType's order: the first of these fields a template sets is its type.
TYPES = {
    "container": "Container",
    "containerSet": "ContainerSet",
    "steps": "Steps",
    "dag": "DAG",
    "script": "Script",
    "resource": "Resource",
    "data": "Data",
    "suspend": "Suspend",
    "http": "HTTP",
    "plugin": "Plugin",
}
POD_TYPES = {"Container", "ContainerSet", "Script", "Resource", "Data"}
LEAF_TYPES = POD_TYPES | {"HTTP", "Plugin"}
TYPE_CHOICES = (
    "choose one of: container, containerSet, steps, script, resource, dag, suspend, template, "
    "template ref"
)
#: A template with one of these (or a containerSet with a `main`) has `outputs.result`.
RESULT_FIELDS = ("container", "script", "data", "http", "plugin")


def template_type(tmpl: dict[str, Any]) -> str:
    """GetType: the template's type, or "Unknown" when it sets none of the type fields."""
    return next((kind for key, kind in TYPES.items() if tmpl.get(key) is not None), "Unknown")


def output_paths(tmpl: dict[str, Any]) -> dict[str, str]:
    """`outputs.artifacts.<name>.path` and `outputs.parameters.<name>.path`, with their paths."""
    found = artifact_paths(tmpl, "outputs")
    for param in as_dicts(as_dict(tmpl.get("outputs")).get("parameters")):
        path = as_str(as_dict(param.get("valueFrom")).get("path"))
        if path:
            found[f"outputs.parameters.{as_str(param.get('name'))}.path"] = path
    return found


def artifact_paths(tmpl: dict[str, Any], side: str) -> dict[str, str]:
    """`<side>.artifacts.<name>.path` for each artifact on that side that has a path."""
    artifacts = as_dicts(as_dict(tmpl.get(side)).get("artifacts"))
    paths = {
        as_str(a.get("name")): as_str(a.get("path")) for a in artifacts if as_str(a.get("path"))
    }
    return {f"{side}.artifacts.{name}.path": path for name, path in paths.items()}

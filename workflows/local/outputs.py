"""A node's outputs, collected as Argo's executor and controller collect them.

Container and script steps leave files behind (`valueFrom.path`, artifact paths); resource
steps answer `jsonPath` queries; DAG and steps templates pass their children's outputs up
through `valueFrom.parameter` or `valueFrom.expression` and artifacts `from`. A missing file
with a `valueFrom.default` takes the default; a missing optional artifact is left out.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local import leaves
from workflows.local.expressions import PLACEHOLDER, substitute
from workflows.local.paths import PathMapper
from workflows.local.scope import ABSENT, Scope
from workflows.local.store import Node

if TYPE_CHECKING:
    from workflows.local.engine import Run


def copy(source: Path, target: Path) -> None:
    """Copy an artifact, a file or a folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def stage_artifacts(
    artifacts: dict[str, str], declared: list[dict[str, Any]], mapper: PathMapper
) -> None:
    """Put input artifacts where the container expects them."""
    paths = {a["name"]: a.get("path", "") for a in declared}
    for name, source in artifacts.items():
        if not Path(source).exists():
            raise RunError(f"input artifact {name}: {source} does not exist")
        copy(Path(source), mapper.local(paths[name]))


def file_outputs(
    run: Run,
    node: Node,
    outputs: dict[str, Any],
    mapper: PathMapper,
    scope: Scope,
    lenient: bool = False,
) -> None:
    """Outputs of a container or script step, read from the files it wrote.

    `lenient` is for a step that already failed: what it wrote is kept, what it did not is
    left out, and the node keeps the phase and message of its failure.
    """
    params = []
    for p in outputs.get("parameters") or []:
        source = p.get("valueFrom") or {}
        if "path" in source:
            path = mapper.local(source["path"])
            if path.is_file():
                value = path.read_text().rstrip("\n") if path.stat().st_size else ""
            elif "default" in source:
                value = str(source["default"])
            elif lenient:
                continue
            else:
                node.phase = "Error"
                node.message = f"output parameter {p['name']}: {source['path']} was not written"
                return
        else:
            value = substitute(str(p.get("value", "")), scope, f"output {p['name']}")
        params.append({"name": p["name"], "value": value})
        if p.get("globalName"):
            run.set_global(f"parameters.{p['globalName']}", value)
    artifacts = []
    for a in outputs.get("artifacts") or []:
        local = mapper.local(a["path"])
        if not local.exists():
            if a.get("optional") or lenient:
                continue
            node.phase, node.message = "Error", f"output artifact {a['name']}: {a['path']} missing"
            return
        saved = run.store.path / "artifacts" / node.id / a["name"]
        copy(local, saved)
        artifacts.append({"name": a["name"], "path": str(saved)})
        if a.get("globalName"):
            run.set_global(f"artifacts.{a['globalName']}", str(saved))
    if params:
        node.outputs["parameters"] = params
    if artifacts:
        node.outputs["artifacts"] = artifacts


def resource_outputs(node: Node, template: dict[str, Any], obj: Any) -> None:
    """Outputs of a resource step: `jsonPath` queries into the object."""
    params = []
    for p in (template.get("outputs") or {}).get("parameters") or []:
        expression = (p.get("valueFrom") or {}).get("jsonPath")
        if expression is None:
            raise RunError(f"resource output {p['name']}: only valueFrom.jsonPath is supported")
        params.append({"name": p["name"], "value": leaves.json_path(obj, expression)})
    if params:
        node.outputs["parameters"] = params


def template_outputs(run: Run, node: Node, template: dict[str, Any], scope: Scope) -> None:
    """Outputs of a DAG or steps template, from its children's (getTemplateOutputsFromScope)."""
    outputs = template.get("outputs") or {}
    params = []
    for p in outputs.get("parameters") or []:
        source = p.get("valueFrom") or {}
        where = f"output {p['name']} of {template['name']}"
        if "parameter" not in source and "expression" not in source:
            raise RunError(f"{where}: output parameters must have a valueFrom specified")
        try:
            if "expression" in source:
                value = _expression(str(source["expression"]), scope, where)
            else:
                ref = str(source["parameter"])
                match = PLACEHOLDER.fullmatch(ref.strip())
                if match and scope.get(match.group(1)) == ABSENT:
                    if "default" not in source:
                        raise RunError(
                            f'output parameter "{p["name"]}": "{ref}" is an absent optional '
                            "(skipped/omitted node output with no default)"
                        )
                    value = str(source["default"])
                else:
                    value = substitute(ref, scope, where)
        except RunError:
            if "default" not in source:
                raise
            value = str(source["default"])
        params.append({"name": p["name"], "value": value})
        if p.get("globalName"):
            run.set_global(f"parameters.{p['globalName']}", value)
    artifacts = []
    for a in outputs.get("artifacts") or []:
        try:
            path = substitute(str(a.get("from", "")), scope, f"output artifact {a['name']}")
        except RunError:
            if a.get("optional"):
                continue
            raise
        if not path and a.get("optional"):
            continue
        artifacts.append({"name": a["name"], "path": path})
        if a.get("globalName"):
            run.set_global(f"artifacts.{a['globalName']}", path)
    if params:
        node.outputs["parameters"] = params
    if artifacts:
        node.outputs["artifacts"] = artifacts


def _expression(expression: str, scope: Scope, where: str) -> str:
    """`valueFrom.expression`: run over the scope, reading only the variables it reaches."""
    from workflows.local.expr import ExprError, evaluate, expression_env, render_result

    try:
        return render_result(evaluate(expression, expression_env(scope), strict=()))
    except ExprError as exc:
        raise RunError(f"{where}: {exc}") from None

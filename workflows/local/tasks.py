"""What DAG tasks and steps share: `when`, loops, arguments, and what finished ones leave in scope.

The rules follow Argo's controller (workflow/controller/dag.go, steps.go, scope.go and
operator.go at v4.1): `when` is resolved before anything else, so a false `when` wins over
arguments that could not be resolved; loops (`withItems`, `withParam`, `withSequence`)
expand into one call per item, named `name(index:item)`; an argument that only refers to a
Skipped or Omitted node's output without a default is not supplied; a loop's outputs are
JSON lists over its Succeeded items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.expressions import evaluate_when, pure_reference, substitute
from workflows.local.scope import ABSENT, Scope
from workflows.local.store import Node

if TYPE_CHECKING:
    from workflows.local.engine import Run

Arguments = dict[str, dict[str, str]]

#: Calls of one loop run at once, at most: a withParam over thousands of items needs no
#: thousands of threads on one machine (a template's `parallelism` may lower it further).
MAX_THREADS = 64


@dataclass
class Call:
    """One call of a task or step's template: a single one, or one item of a loop."""

    name: str
    display: str
    scope: Scope
    when: str = ""


def should_execute(when: str, where: str) -> bool:
    """Argo's `shouldExecute`: an empty condition runs; otherwise govaluate must say true."""
    if not when.strip():
        return True
    try:
        return evaluate_when(when)
    except RunError as exc:
        raise RunError(f"{where}: invalid 'when' expression '{when}': {exc}") from None


def resolve_when(task: dict[str, Any], scope: Scope, where: str) -> tuple[bool | None, str]:
    """Resolve a task's `when` before anything else.

    Returns (proceed, resolved): proceed is None when the condition mentions the loop's item
    and can only be decided per item.
    """
    when = str(task.get("when") or "")
    if not when:
        return True, ""
    if _loops(task) and "item" in when:
        return None, when
    resolved = substitute(when, scope, f"{where}.when")
    return should_execute(resolved, where), resolved


def expand(
    task: dict[str, Any], scope: Scope, node_name: str, display: str, where: str
) -> list[Call] | None:
    """The calls of a task: None without a loop, else one per item (possibly none)."""
    items = _items(task, scope, where)
    if items is None:
        return None
    calls = []
    for index, item in enumerate(items):
        item_scope, label = _item(item)
        call_scope = {**scope, **item_scope}
        when = str(task.get("when") or "")
        resolved = substitute(when, call_scope, f"{where}({index}).when") if when else ""
        calls.append(
            Call(
                f"{node_name}({index}:{label})", f"{display}({index}:{label})", call_scope, resolved
            )
        )
    return calls


def _loops(task: dict[str, Any]) -> bool:
    return any(k in task for k in ("withItems", "withParam", "withSequence"))


def _items(task: dict[str, Any], scope: Scope, where: str) -> list[Any] | None:
    if "withItems" in task:
        return list(task["withItems"])
    if "withParam" in task:
        text = substitute(str(task["withParam"]), scope, f"{where}.withParam")
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise RunError(
                f"{where}: withParam value could not be parsed as a JSON list: {text.strip()[:200]}"
            )
        return items
    if "withSequence" in task:
        return _sequence(task["withSequence"], scope, where)
    return None


def _sequence(sequence: dict[str, Any], scope: Scope, where: str) -> list[str]:
    """`withSequence`: count or start..end, formatted with printf-style `format`."""

    def number(key: str) -> int | None:
        if key not in sequence:
            return None
        text = substitute(str(sequence[key]), scope, f"{where}.withSequence.{key}")
        try:
            return int(text)
        except ValueError:
            raise RunError(f"{where}.withSequence.{key}: {text!r} is not an integer") from None

    count, start, end = number("count"), number("start"), number("end")
    if count is not None and end is not None:
        raise RunError(f"{where}.withSequence: only one of count or end can be defined")
    first = start or 0
    if count is not None:
        numbers = list(range(first, first + count))
    elif end is not None:
        step = 1 if end >= first else -1
        numbers = list(range(first, end + step, step))
    else:
        raise RunError(f"{where}.withSequence: give count or end")
    fmt = str(sequence.get("format") or "%d")
    try:
        return [fmt % n for n in numbers]
    except (TypeError, ValueError):
        raise RunError(f"{where}.withSequence.format: {fmt!r} is not a printf format") from None


def _item(item: Any) -> tuple[Scope, str]:
    """An item's variables and its label in node names, as Argo's `processItem` makes them."""
    if isinstance(item, dict):
        scope = {f"item.{k}": _text(v) for k, v in item.items()}
        scope["item"] = json.dumps(item, separators=(",", ":"), sort_keys=True)
        label = ",".join(sorted(f"{k}:{_text(v)}" for k, v in item.items()))
        return scope, label
    if isinstance(item, list):
        text = json.dumps(item, separators=(",", ":"))
        return {"item": text}, text
    return {"item": _text(item)}, _text(item)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def arguments(task: dict[str, Any], scope: Scope, where: str) -> Arguments:
    """A call's arguments; a pure reference to an absent optional output becomes ABSENT."""
    given = task.get("arguments") or {}
    params = {}
    for p in given.get("parameters") or []:
        raw = str(p.get("value", ""))
        ref = pure_reference(raw)
        if ref is not None and scope.get(ref) == ABSENT:
            params[p["name"]] = ABSENT
            continue
        params[p["name"]] = substitute(raw, scope, f"{where}.arguments.{p['name']}")
    artifacts = {}
    for a in given.get("artifacts") or []:
        source = substitute(str(a.get("from", "")), scope, f"{where}.arguments.{a['name']}")
        if a.get("subPath"):
            sub = substitute(str(a["subPath"]), scope, f"{where}.arguments.{a['name']}.subPath")
            source = f"{source}/{sub}" if source else ""
        if source or not a.get("optional"):
            artifacts[a["name"]] = source  # "" is an artifact with no content: an optional input
    return {"parameters": params, "artifacts": artifacts}


def finished_scope(
    run: Run, prefix: str, name: str, node: Node, items: list[Node] | None = None
) -> Scope:
    """What later tasks may reference of a finished task or step (`tasks.<name>.*`)."""
    scope = {f"{prefix}.{name}.status": node.phase, f"{prefix}.{name}.id": node.id}
    if node.started_at:
        scope[f"{prefix}.{name}.startedAt"] = node.started_at
    if node.finished_at:
        scope[f"{prefix}.{name}.finishedAt"] = node.finished_at
    if items is not None:
        scope.update(_aggregate(prefix, name, items))
    outputs = node.outputs
    for p in outputs.get("parameters") or []:
        scope[f"{prefix}.{name}.outputs.parameters.{p['name']}"] = p["value"]
    for a in outputs.get("artifacts") or []:
        scope[f"{prefix}.{name}.outputs.artifacts.{a['name']}"] = a["path"]
    if "result" in outputs:
        scope[f"{prefix}.{name}.outputs.result"] = outputs["result"]
    if "exitCode" in outputs:
        scope[f"{prefix}.{name}.exitCode"] = outputs["exitCode"]
    if node.phase in {"Skipped", "Omitted"} and not outputs and items is None:
        scope.update(_skipped_outputs(run, prefix, name, node, with_artifacts=prefix == "steps"))
    return scope


def _skipped_outputs(run: Run, prefix: str, name: str, node: Node, with_artifacts: bool) -> Scope:
    """A skipped node's declared outputs: the producer's default, or ABSENT."""
    template = run.template_of(node) or {}
    outputs = template.get("outputs") or {}
    scope = {}
    for p in outputs.get("parameters") or []:
        default = (p.get("valueFrom") or {}).get("default")
        key = f"{prefix}.{name}.outputs.parameters.{p['name']}"
        scope[key] = ABSENT if default is None else str(default)
    if with_artifacts:
        for a in outputs.get("artifacts") or []:
            scope[f"{prefix}.{name}.outputs.artifacts.{a['name']}"] = ""
    if "result" in outputs:
        scope[f"{prefix}.{name}.outputs.result"] = ABSENT
    return scope


def _aggregate(prefix: str, name: str, children: list[Node]) -> Scope:
    """A loop's outputs over its Succeeded items, as Argo's `processAggregateNodeOutputs`."""
    params: list[dict[str, str]] = []
    by_name: dict[str, list[str]] = {}
    results: list[Any] = []
    for child in children:
        if child.phase != "Succeeded" or not child.outputs:
            continue
        named = {p["name"]: p["value"] for p in child.outputs.get("parameters") or []}
        if named:
            params.append(named)
            for key, value in named.items():
                by_name.setdefault(key, []).append(value)
        if "result" in child.outputs:
            results.append(_json_or_text(child.outputs["result"]))
    scope = {
        f"{prefix}.{name}.outputs.parameters": json.dumps(params, separators=(",", ":")),
        f"{prefix}.{name}.outputs.result": json.dumps(results, separators=(",", ":")),
    }
    for key, values in by_name.items():
        decoded = [_json_or_text(v) for v in values]
        structured = all(isinstance(v, (dict, list)) for v in decoded)
        scope[f"{prefix}.{name}.outputs.parameters.{key}"] = json.dumps(
            decoded if structured else values, separators=(",", ":")
        )
    return scope


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text

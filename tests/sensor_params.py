"""What an Argo Events v1.9 Sensor does with one webhook event: filters, then trigger parameters.

A recording, in Python, of the code paths our Sensor uses, written from Argo Events v1.9.11:

- the event data a webhook EventSource publishes (`pkg/eventsources/sources/github/start.go`
  `HandleRoute` and `parseValidateRequest`; `.../gitlab/start.go`; `pkg/eventsources/events/
  event-data.go`): `{"headers": <http.Header>, "body": <payload>}`, GitHub's body with the
  `X-GitHub-Event` and `X-GitHub-Delivery` headers copied in;
- data filters (`pkg/sensors/dependencies/filter.go`, `filterData`, AND of all filters);
- which triggers fire (`pkg/sensors/listener.go`: a trigger's `conditions`, else all deps);
- parameters (`pkg/sensors/triggers/params.go`, `ResolveParamValue`, `getValueWithTemplate`,
  `getValueByKey`, `ApplyParams`), applied to an `argoWorkflow` trigger's source resource
  (`pkg/sensors/triggers/argo-workflow/argo-workflow.go`, `ApplyResourceParameters`, then
  `Execute` adds its labels and submits).

gjson and sjson paths, Go regexes and Go templates are implemented for the forms our Sensor
uses: dotted keys with `\\` escapes and array indexes; RE2 syntax that Python reads alike; the
template `{{ .Input.a.b }}` with an optional `| trimPrefix "..."`. Anything else raises
`NotModelled`, so a Sensor that moves past this subset fails its tests instead of being
judged by a guess.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from typing import Any

ZERO_SHA = "0" * 40


class NotModelled(Exception):
    """The Sensor uses something this recording does not implement."""


# --- event data, as the EventSources publish it -----------------------------------------------


def canonical_header(name: str) -> str:
    """Go's `textproto.CanonicalMIMEHeaderKey`: `X-GitHub-Event` -> `X-Github-Event`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _http_header(headers: dict[str, str]) -> dict[str, list[str]]:
    return {canonical_header(k): [v] for k, v in sorted(headers.items())}


def github_event(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The event data of a GitHub delivery (signature checked, JSON body)."""
    lookup = {canonical_header(k): v for k, v in headers.items()}
    payload = dict(body)
    for name in ("X-GitHub-Event", "X-GitHub-Delivery"):  # r.Header.Get: "" when absent
        payload[name] = lookup.get(canonical_header(name), "")
    return {"headers": _http_header(headers), "body": payload}


def gitlab_event(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The event data of a GitLab delivery (token checked)."""
    return {"headers": _http_header(headers), "body": copy.deepcopy(body)}


# --- gjson ------------------------------------------------------------------------------------

_GJSON_SPECIAL = set("|#@*?!")


def _path(path: str, special: set[str]) -> list[str]:
    """Split a gjson/sjson path of plain keys: `.` separates, `\\` escapes the next character."""
    parts, current, i = [], "", 0
    if path.startswith(("..", ":")) or not path:
        raise NotModelled(f"path {path!r}: only plain dotted keys are modelled")
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path):
            current += path[i + 1]
            i += 2
            continue
        if char in special:
            raise NotModelled(f"path {path!r}: {char!r} (wildcard, query, modifier) not modelled")
        if char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    parts.append(current)
    if "" in parts:
        raise NotModelled(f"path {path!r}: empty key")
    return parts


@dataclass(frozen=True)
class Result:
    """A gjson Result: whether the path exists, and the value there (Python form of the JSON)."""

    exists: bool
    value: Any = None

    @property
    def type(self) -> str:
        """gjson's `Type.String()`."""
        v = self.value
        if v is None:
            return "Null"
        if v is True:
            return "True"
        if v is False:
            return "False"
        if isinstance(v, str):
            return "String"
        if isinstance(v, int | float):
            return "Number"
        return "JSON"

    def string(self) -> str:
        """gjson's `Result.String()`, for the types this recording models."""
        if not self.exists or self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, str):
            return self.value
        raise NotModelled(
            f"gjson String() of {self.type} needs the payload's raw JSON text: not modelled"
        )

    def bool(self) -> bool:
        """gjson's `Result.Bool()`."""
        if isinstance(self.value, bool):
            return self.value
        if isinstance(self.value, str):
            return _parse_bool(self.value, strict=False)
        if isinstance(self.value, int | float):
            return self.value != 0
        return False


def gjson_get(data: Any, path: str) -> Result:
    """gjson.GetBytes(json(data), path) for plain dotted paths."""
    node = data
    for key in _path(path, _GJSON_SPECIAL):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return Result(False)
    return Result(True, node)


def _parse_bool(value: str, strict: bool = True) -> bool:
    """Go's `strconv.ParseBool` (strict raises on other strings; gjson reads them as false)."""
    if value in {"1", "t", "T", "TRUE", "true", "True"}:
        return True
    if value in {"0", "f", "F", "FALSE", "false", "False"}:
        return False
    if strict:
        raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')
    return False


# --- sjson ------------------------------------------------------------------------------------


def sjson_set(obj: dict[str, Any], path: str, value: str) -> None:
    """sjson.SetBytes(json, path, value) for a string value at an existing place."""
    keys = _path(path, set("|#@*?!"))
    node: Any = obj
    for key in keys[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise NotModelled(f"sjson path {path!r}: creating {key!r} is not modelled")
    last = keys[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    else:
        raise NotModelled(f"sjson path {path!r}: setting {last!r} there is not modelled")


# --- Go regexes -------------------------------------------------------------------------------


def go_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern that Python reads alike; refuse what they read differently.

    `$` (end of text in Go) becomes `\\Z` (Python's `$` also matches before a final newline).
    Class shorthands (`\\d`, `\\w`, `\\s`, `\\b`: Unicode in Python, ASCII in Go), POSIX
    classes, `\\Q...\\E`, lookarounds and flags other than a leading `(?i)` are refused.
    """
    out, i, in_class = "", 0, False
    if pattern.startswith("(?i)"):
        out, i = "(?i)", 4
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt or nxt.isalnum():
                raise NotModelled(f"regex {pattern!r}: escape \\{nxt} not modelled")
            out += char + nxt
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                raise NotModelled(f"regex {pattern!r}: POSIX classes not modelled")
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern.startswith("[^]", i) or pattern.startswith("[]", i):
                raise NotModelled(f"regex {pattern!r}: a leading ']' in a class not modelled")
        elif char == "(" and pattern.startswith("(?", i) and not pattern.startswith("(?:", i):
            raise NotModelled(f"regex {pattern!r}: group flags and lookarounds not modelled")
        elif char == "$":
            out += r"\Z"
            i += 1
            continue
        out += char
        i += 1
    return re.compile(out)


# --- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether an event passes a dependency's filters, and Argo Events' error if it failed one."""

    passed: bool
    error: str | None = None


def filter_data(filters: list[dict[str, Any]], data: Any, operator: str = "") -> Verdict:
    """`filterData` with the AND operator: every filter must have a value that matches."""
    if operator not in ("", "and"):
        raise NotModelled(f"dataLogicalOperator {operator!r} not modelled")
    if not filters:
        return Verdict(True)
    for f in filters:
        if f.get("template"):
            raise NotModelled("data filter templates not modelled")
        result = gjson_get(data, f["path"])
        if not result.exists:
            return Verdict(False, f"data filter error (path '{f['path']}' does not exist)")
        values = f.get("value") or []
        if not values:
            return Verdict(False, "data filter error (no values specified)")
        comparator = f.get("comparator", "")
        if f["type"] == "bool":
            matched = False
            for value in values:  # in order: Go stops at the first match or the first bad value
                try:
                    matched = _parse_bool(value) == result.bool()
                except ValueError as exc:
                    return Verdict(False, f"data filter error ({exc})")
                if matched:
                    break
            if not matched:
                return Verdict(False)
        elif f["type"] == "string":
            text = result.string()
            matched = False
            for value in values:
                try:
                    found = go_regex(value).search(text) is not None
                except re.error as exc:
                    return Verdict(False, f"data filter error ({exc})")
                if comparator in ("", "="):
                    matched = found
                elif comparator == "!=":
                    matched = not found
                if matched:
                    break
            if not matched:
                return Verdict(False)
        else:
            raise NotModelled(f"data filter type {f['type']!r} not modelled")
    return Verdict(True)


def filter_event(dependency: dict[str, Any], data: Any) -> Verdict:
    """`Filter`: only data filters are modelled; the others must be absent."""
    filters = dependency.get("filters")
    if filters is None:
        return Verdict(True)
    if set(filters) - {"data", "dataLogicalOperator"}:
        raise NotModelled(f"filters {sorted(set(filters) - {'data'})} not modelled")
    if dependency.get("filtersLogicalOperator", "") not in ("", "and"):
        raise NotModelled("filtersLogicalOperator or not modelled")
    return filter_data(filters.get("data") or [], data, filters.get("dataLogicalOperator", ""))


# --- parameters -------------------------------------------------------------------------------

_TEMPLATE = re.compile(
    r'^\{\{\s*\.Input((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*(?:\|\s*trimPrefix\s+"([^"\\]*)"\s*)?\}\}$'
)


class TemplateError(Exception):
    """The Go template failed at run time (Argo Events then tries `dataKey`, then `value`)."""


def go_template(template: str, data: Any) -> str:
    """`getValueWithTemplate` for `{{ .Input.a.b }}` and `{{ .Input.a.b | trimPrefix "x" }}`."""
    match = _TEMPLATE.match(template)
    if not match:
        raise NotModelled(f"template {template!r}: only .Input fields and trimPrefix are modelled")
    node, missing = data, False
    for name in match.group(1).split(".")[1:]:
        if missing or node is None:
            raise TemplateError(f"nil pointer evaluating interface {{}}.{name}")
        if not isinstance(node, dict):
            raise TemplateError(f"can't evaluate field {name} in type {type(node).__name__}")
        missing = name not in node
        node = node.get(name)
    prefix = match.group(2)
    if prefix is not None:
        if missing or node is None:
            raise TemplateError("invalid value; expected string")
        if not isinstance(node, str):
            raise TemplateError(f"wrong type for value; expected string; got {type(node)}")
        out = node.removeprefix(prefix)
    elif missing:
        out = "<no value>"
    elif isinstance(node, str):
        out = node
    else:
        raise NotModelled(f"template {template!r}: printing a {type(node).__name__}")
    if out in ("", "<no value>"):
        raise TemplateError(f"template evaluated to empty string or no value: {template}")
    return out


def resolve_param(src: dict[str, Any], events: dict[str, Any]) -> tuple[str | None, str]:
    """`ResolveParamValue` for data keys and templates: (value or None, gjson type name)."""
    if src.get("contextKey") or src.get("contextTemplate") or src.get("useRawData"):
        raise NotModelled("contextKey, contextTemplate and useRawData are not modelled")
    default = src.get("value")
    name = src["dependencyName"]
    if name not in events:
        return (default, "String") if default is not None else (None, "String")
    data = events[name]
    key, template = src.get("dataKey", ""), src.get("dataTemplate", "")
    if not key and not template:
        if default is None:
            raise NotModelled("a parameter of the whole event is not modelled")
        return default, "String"
    if template:
        try:
            return go_template(template, data), "String"
        except TemplateError:
            pass
    if key:
        result = gjson_get(data, key)
        if result.exists:
            if result.type == "Null":
                return "null", "Null"
            return result.string(), result.type
    if default is not None:
        return default, "String"
    raise ValueError(f"unable to resolve '{name}' parameter value")


def apply_params(
    resource: dict[str, Any], parameters: list[dict[str, Any]], events: dict[str, Any]
) -> dict[str, Any]:
    """`ApplyParams`: each parameter's value set at its `dest` (a string, as sjson.SetBytes)."""
    obj = copy.deepcopy(resource)
    for param in parameters:
        value, _ = resolve_param(param["src"], events)
        if value is None:
            continue
        operation = param.get("operation", "")
        if operation in ("append", "prepend"):
            current = gjson_get(obj, param["dest"])
            if current.exists:
                value = (
                    current.string() + value if operation == "append" else value + current.string()
                )
        elif operation not in ("", "overwrite"):
            raise ValueError(f"unsupported trigger parameter operation: {operation}")
        sjson_set(obj, param["dest"], value)
    return obj


# --- the Sensor -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A Workflow an `argoWorkflow` trigger would submit (`argo -n <namespace> submit`)."""

    trigger: str
    namespace: str
    workflow: dict[str, Any]


def _fires(template: dict[str, Any], dependencies: list[str], arrived: set[str]) -> bool:
    conditions = template.get("conditions", "")
    if not conditions:
        return set(dependencies) <= arrived
    if conditions.strip() not in dependencies:
        raise NotModelled(f"conditions {conditions!r}: only one dependency name is modelled")
    return conditions.strip() in arrived


def sensor_submissions(
    sensor: dict[str, Any], event_source: str, event_name: str, data: Any
) -> tuple[list[Submission], dict[str, Verdict]]:
    """What the Sensor submits for one event, and each matching dependency's filter verdict."""
    spec = sensor["spec"]
    verdicts: dict[str, Verdict] = {}
    events: dict[str, Any] = {}
    for dep in spec["dependencies"]:
        if (dep["eventSourceName"], dep["eventName"]) != (event_source, event_name):
            continue
        verdicts[dep["name"]] = filter_event(dep, data)
        if verdicts[dep["name"]].passed:
            events[dep["name"]] = data
    names = [dep["name"] for dep in spec["dependencies"]]
    submissions = []
    for trigger in spec["triggers"]:
        template = trigger["template"]
        if not events or not _fires(template, names, set(events)):
            continue
        if trigger.get("parameters"):
            raise NotModelled("trigger-level parameters (applied to the template) not modelled")
        argo = template.get("argoWorkflow")
        if argo is None or argo.get("operation", "submit") != "submit":
            raise NotModelled("only argoWorkflow triggers with operation submit are modelled")
        resource = argo["source"].get("resource")
        if resource is None:
            raise NotModelled("only an inline source resource is modelled")
        workflow = apply_params(resource, argo.get("parameters") or [], events)
        metadata = workflow.setdefault("metadata", {})
        if not metadata.get("name") and not metadata.get("generateName"):
            raise ValueError("failed to trigger the workflow, neither name nor generateName")
        metadata.setdefault("labels", {}).update(
            {
                "events.argoproj.io/sensor": sensor["metadata"]["name"],
                "events.argoproj.io/trigger": template["name"],
                "events.argoproj.io/action-timestamp": str(int(time.time() * 1000)),
            }
        )
        namespace = metadata.get("namespace") or sensor["metadata"].get("namespace", "")
        submissions.append(Submission(template["name"], namespace, workflow))
    return submissions, verdicts

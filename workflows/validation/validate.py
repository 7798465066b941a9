"""Validate Kubernetes objects, and the manifests Argo resource templates embed, strictly.

Each problem is one line: the document, the field's path, what is wrong, and for unknown
fields the closest known one. A CRD's CEL rules (`x-kubernetes-validations`) run as the API
server runs them on a create (`cel_rules`). Values that are Argo expressions (`{{...}}`) are
only known at run time, so type and format checks skip them, and so do the CEL rules that read
them; every other check still applies. Whole Argo Workflows, WorkflowTemplates and
CronWorkflows then get Argo's own semantic checks (`argo_rules`), worded as `argo lint` words
them.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from workflows.manifest_text import quote_placeholders
from workflows.validation.argo_rules import workflow_problems
from workflows.validation.registry import ARGO_GROUP_VERSION, SchemaRegistry

#: Kinds that Argo's own validator checks beyond the schema (`argo lint`).
_ARGO_CHECKED_KINDS = {"Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow"}

#: Checks that cannot judge a value Argo fills in at run time.
_RUNTIME_VALUE_CHECKS = {
    "type",
    "enum",
    "const",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
}


@dataclass(frozen=True)
class Problem:
    """One reason a document fails validation."""

    document: str
    path: str
    message: str
    unchecked: bool = False

    def __str__(self) -> str:
        return f"{self.document}: {self.path.rstrip(':') or '(root)'}: {self.message}"


def validate_files(
    paths: Iterable[str | Path],
    registry: SchemaRegistry,
    allow_unchecked: Collection[str] = (),
) -> list[Problem]:
    """Validate every YAML document in the given files."""
    docs: list[tuple[str, Any]] = []
    problems = []
    for path in paths:
        try:
            loaded = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            problems.append(Problem(str(path), "", f"cannot read YAML: {exc}"))
            continue
        if not loaded:
            problems.append(Problem(str(path), "", "no YAML documents in the file"))
        docs.extend((str(path), doc) for doc in loaded)
    return problems + validate_documents(docs, registry, allow_unchecked)


def validate_documents(
    docs: Iterable[tuple[str, Any]],
    registry: SchemaRegistry,
    allow_unchecked: Collection[str] = (),
) -> list[Problem]:
    """Validate (origin, object) pairs; an empty list means every object passed.

    Args:
        docs: Objects with the file or source they came from.
        registry: Where schemas come from.
        allow_unchecked: Kinds that may pass without a schema (reported nowhere).
    """
    problems: list[Problem] = []
    for origin, obj in docs:
        problems.extend(_validate_object(origin, obj, "", registry, allow_unchecked))
    return problems


def _label(origin: str, obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    return f"{origin}: {obj.get('kind')}/{name}"


def _validate_object(
    origin: str,
    obj: Any,
    prefix: str,
    registry: SchemaRegistry,
    allow_unchecked: Collection[str],
) -> Iterator[Problem]:
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        yield Problem(origin, prefix, "not a Kubernetes object: apiVersion and kind are required")
        return
    label = _label(origin, obj)
    api_version, kind = obj["apiVersion"], obj["kind"]
    validator = registry.validator(api_version, kind)
    readable = True
    mistyped = False
    if validator is not None:
        for error in validator.iter_errors(obj):
            described = list(_describe(label, prefix, error))
            readable = readable and (not described or error.instance is None)
            mistyped = mistyped or (bool(described) and error.validator == "type")
            yield from described
    else:
        yield from _validate_builtin(label, prefix, obj, registry, allow_unchecked)
    # The API server runs a CRD's CEL rules only on an object of the right types; values in
    # an embedded manifest are filled in at run time, so rules that read them are not judged.
    rules_schema = registry.rules_schema(api_version, kind)
    if rules_schema is not None and not mistyped:
        # Imported here: celpy and its grammar load only where a CRD's rules are needed.
        from workflows.validation.cel_rules import rule_failures

        for failure in rule_failures(obj, rules_schema, runtime_values=bool(prefix)):
            yield Problem(label, _join(prefix, _format_path(failure.path)), failure.message)
    # Argo decodes a document strictly before it validates it: an unknown field or a wrong
    # type stops it there (a null reads as absent). Embedded manifests are filled in at run
    # time, so only whole documents are what `argo lint` would see.
    if api_version == ARGO_GROUP_VERSION and kind in _ARGO_CHECKED_KINDS and not prefix:
        if readable:
            yield from (Problem(label, "", message) for message in workflow_problems(obj))
    if api_version == ARGO_GROUP_VERSION:
        for path, manifest in _embedded_manifests(obj):
            where = _join(prefix, path)
            try:
                inner = yaml.safe_load(quote_placeholders(manifest))
            except yaml.YAMLError as exc:
                yield Problem(label, where, f"embedded manifest is not valid YAML: {exc}")
                continue
            yield from _validate_object(label, inner, where + ":", registry, allow_unchecked)


def _validate_builtin(
    label: str,
    prefix: str,
    obj: dict[str, Any],
    registry: SchemaRegistry,
    allow_unchecked: Collection[str],
) -> Iterator[Problem]:
    try:
        kubernetes_validate.validate(obj, registry.kubernetes_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        if obj["kind"] not in allow_unchecked:
            yield Problem(
                label,
                prefix,
                f"unchecked: no schema for {obj['apiVersion']} {obj['kind']}; pass its CRD with "
                f"--crds (kubectl get crd <name> -o yaml), or allow it with "
                f"--allow-unchecked {obj['kind']}",
                unchecked=True,
            )
    except kubernetes_validate.ValidationError as exc:
        yield from _describe(label, prefix, exc)


def _describe(label: str, prefix: str, error: jsonschema.ValidationError) -> Iterator[Problem]:
    if error.context:
        # For `anyOf: [X, null]` (optional fields in generated schemas) the null branch's
        # complaint is never the useful one.
        useful = [e for e in error.context if e.validator_value != "null"] or error.context
        best = jsonschema.exceptions.best_match(useful)
        if best is not None:
            yield from _describe(label, prefix, best)
            return
    path = _join(prefix, _format_path(error.absolute_path))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list((error.schema or {}).get("properties", {}))
        for name in error.instance:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                yield Problem(label, _join(path, name), f"unknown field{hint}")
        return
    if (
        error.validator in _RUNTIME_VALUE_CHECKS
        and isinstance(error.instance, str)
        and "{{" in error.instance
    ):
        return
    yield Problem(label, path, error.message)


def _embedded_manifests(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, manifest) for every `resource.manifest` string inside an Argo object."""
    if isinstance(obj, dict):
        resource = obj.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("manifest"), str):
            yield _join(path, "resource.manifest"), resource["manifest"]
        for key, value in obj.items():
            yield from _embedded_manifests(value, _join(path, str(key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _embedded_manifests(value, f"{path}[{i}]")


def _format_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if prefix.endswith(":") or path.startswith("[") else f"{prefix}.{path}"

"""CRD validation rules (`x-kubernetes-validations`, in CEL), evaluated as the API server does.

For every node of an object whose schema lists rules, each rule runs with `self` bound to the
node's value (`_cel_values` says how values are typed), after the schema's `default`s are
applied, as the API server applies them before it validates. A rule that is false fails with
its `message` (or `messageExpression`, or "failed rule: RULE"); one that cannot be evaluated
fails with the error, as "no such key: x evaluating rule: RULE". Objects here are created, so
transition rules (those reading `oldSelf`) do not run, as on a create.

Rules are compiled once each, by celpy with Kubernetes' libraries added (`_cel_library`). A
rule that celpy cannot compile, or that calls a function neither provides, is a problem
("cannot be evaluated here") unless `NOT_EVALUATED` names it with the reason.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, Context, Evaluator, base_functions

from workflows.validation import _cel_values as values
from workflows.validation._cel_library import FUNCTIONS

#: Rule texts in the upstream schemas that are deliberately not evaluated, with the reason.
#: Empty: every rule of the schemas in ../shared/schemas compiles and runs (a test keeps this
#: list equal to what the schemas hold, so a schema upgrade that needs more shows up there).
NOT_EVALUATED: dict[str, str] = {}

#: Macros that celpy expands itself (CEL's, plus `min`, which Kubernetes' lists library has).
_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter", "min"})

#: One path into an object: property names and list indexes.
Path = tuple[str | int, ...]

# celpy logs every evaluation step at debug level; validation has no use for it.
logging.getLogger("celpy").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Compiled:
    """A rule ready to run, or the reason it does not run."""

    rule: str
    program: celpy.Runner | None = None
    skipped: str | None = None  # a create does not run it (transition rule)
    unsupported: str | None = None  # celpy cannot run it


@dataclass(frozen=True)
class Failure:
    """A rule that an object fails."""

    path: Path
    message: str


class _Evaluator(Evaluator):
    """celpy's interpreter, with `has(x.f)` marked as a lookup that reads no value."""

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        return _Evaluator(ast, activation=self.activation)

    def macro_has_eval(self, exprlist: lark.Tree) -> celtypes.BoolType:
        token = values.PROBING.set(True)
        try:
            return super().macro_has_eval(exprlist)
        finally:
            values.PROBING.reset(token)


class _Runner(celpy.InterpretedRunner):
    def evaluate(self, context: Context) -> celtypes.Value:
        return _Evaluator(ast=self.ast, activation=self.new_activation()).evaluate(context)


@functools.cache
def _environment() -> celpy.Environment:
    # celpy sets the recursion limit to 2500; never lower what the process already has.
    limit = sys.getrecursionlimit()
    environment = celpy.Environment(runner_class=_Runner)
    sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))
    return environment


def _called(tree: lark.Tree) -> set[str]:
    """Names of the functions and macros an expression calls."""
    names = set()
    for node in tree.iter_subtrees():
        if node.data in ("ident_arg", "dot_ident_arg"):
            names.add(str(node.children[0]))
        elif node.data == "member_dot_arg":
            names.add(str(node.children[1]))
    return names


def _identifiers(tree: lark.Tree) -> set[str]:
    return {str(n.children[0]) for n in tree.iter_subtrees() if n.data == "ident"}


@functools.cache
def compile_rule(rule: str, optional_old_self: bool = False) -> Compiled:
    """Compile one rule (once: the result is cached)."""
    env = _environment()
    try:
        tree = env.compile(rule)
    except Exception as exc:  # celpy raises lark's and its own errors
        return Compiled(rule, unsupported=f"celpy cannot parse it: {exc}".splitlines()[0])
    if "oldSelf" in _identifiers(tree):
        if optional_old_self:
            return Compiled(rule, unsupported="optionalOldSelf needs CEL's optional types")
        return Compiled(rule, skipped="a transition rule (oldSelf) runs on updates only")
    unknown = _called(tree) - _MACROS - set(base_functions) - set(FUNCTIONS)
    if unknown:
        names = ", ".join(sorted(unknown))
        return Compiled(rule, unsupported=f"celpy and llmflow lack the function(s) {names}")
    return Compiled(rule, program=env.program(tree, functions=FUNCTIONS))


def rules_in(schema: Any) -> Iterator[dict[str, Any]]:
    """Every `x-kubernetes-validations` entry anywhere in a schema."""
    if isinstance(schema, dict):
        yield from schema.get("x-kubernetes-validations") or ()
        for value in schema.values():
            yield from rules_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from rules_in(value)


def rule_failures(obj: Any, schema: dict[str, Any], runtime_values: bool = False) -> list[Failure]:
    """What the CEL rules of `schema` say about `obj` on a create.

    Args:
        obj: The object, as parsed from YAML.
        schema: Its CRD's `openAPIV3Schema`.
        runtime_values: Strings with `{{` are filled in at run time (an embedded manifest):
            a rule that reads one is not judged.
    """
    walk = _Walk(values.Reads() if runtime_values else None)
    walk.value(obj, schema, (), root=True, needed=False)
    return walk.failures


#: The schema of a value that has none, and of `metadata` as rules see it.
_NO_SCHEMA: dict[str, Any] = {}
_METADATA: dict[str, Any] = {"properties": {}}

#: Whether a schema node has rules at or beneath it, by node (kept alive with its answer).
_RULES_BENEATH: dict[int, tuple[Any, bool]] = {}


def _has_rules(schema: dict[str, Any]) -> bool:
    known = _RULES_BENEATH.get(id(schema))
    if known is None or known[0] is not schema:
        known = _RULES_BENEATH[id(schema)] = (schema, any(True for _ in rules_in(schema)))
    return known[1]


#: Outcomes by (rule, value): the same pieces (a path match, a DAG task) recur across
#: manifests, and celpy takes milliseconds a rule. Cleared when it grows past its bound.
_OUTCOMES: dict[tuple[Compiled, Hashable], bool | str | None] = {}
_OUTCOMES_BOUND = 50_000


class _Walk:
    """One pass over an object: CEL values built bottom-up, rules run at their nodes.

    Each node's value comes with a hashable key that equals another node's key only when the
    two values are the same to CEL (types included: 1, 1.0 and true differ).
    """

    def __init__(self, reads: values.Reads | None) -> None:
        self.reads = reads
        self.failures: list[Failure] = []

    def value(
        self, value: Any, schema: Any, path: Path, root: bool, needed: bool
    ) -> tuple[Any, Hashable]:
        """The CEL value of `value` and its key, after running the rules at and beneath it."""
        if not isinstance(schema, dict):
            schema = _NO_SCHEMA
        rules = schema.get("x-kubernetes-validations") or ()
        if not needed and not rules and not _has_rules(schema):
            return None, None
        needed = needed or bool(rules)
        key: Hashable
        if isinstance(value, dict):
            converted, key = self._object(value, schema, path, root, needed)
        elif isinstance(value, list):
            item_schema = schema.get("items")
            items = [
                self.value(v, item_schema, (*path, i), False, needed) for i, v in enumerate(value)
            ]
            converted = values.make_list([c for c, _ in items], self.reads)
            key = ("list", tuple(k for _, k in items))
        else:
            converted = values.scalar(value, schema, self.reads is not None)
            key = (type(converted).__name__, converted)
        for rule in rules:
            self._check(rule, converted, key, path)
        return converted, key

    def _object(
        self, value: dict[str, Any], schema: dict[str, Any], path: Path, root: bool, needed: bool
    ) -> tuple[Any, Hashable]:
        properties = schema.get("properties")
        fields: dict[str, tuple[Any, Hashable]] = {}
        if isinstance(properties, dict):
            effective = {
                k: v for k, v in value.items() if v is not None or _nullable(properties.get(k))
            }
            for name, prop in properties.items():
                if name not in effective and isinstance(prop, dict) and "default" in prop:
                    effective[name] = prop["default"]
            embedded = root or schema.get("x-kubernetes-embedded-resource")
            for name, child in effective.items():
                field = values.escape(name)
                if field is None:
                    continue
                child_schema: Any = properties.get(name)
                if embedded and name == "metadata":
                    child, child_schema = values.object_meta(child), _METADATA
                fields[field] = self.value(child, child_schema, (*path, name), False, needed)
        else:
            extra = schema.get("additionalProperties")
            for name, child in value.items():
                fields[name] = self.value(child, extra, (*path, name), False, needed)
        converted = values.make_map({k: c for k, (c, _) in fields.items()}, self.reads)
        return converted, ("map", tuple((k, key) for k, (_, key) in fields.items()))

    def _check(self, rule: dict[str, Any], self_value: Any, key: Hashable, path: Path) -> None:
        text = rule.get("rule", "")
        compiled = compile_rule(text, bool(rule.get("optionalOldSelf")))
        where = (*path, *_field_path(rule.get("fieldPath")))
        if compiled.skipped or (compiled.unsupported and text in NOT_EVALUATED):
            return
        if compiled.unsupported or compiled.program is None:
            self.failures.append(
                Failure(where, f"rule cannot be evaluated here ({compiled.unsupported}): {text}")
            )
            return
        if isinstance(self_value, values.RuntimeString):
            return
        if (compiled, key) in _OUTCOMES:
            outcome = _OUTCOMES[compiled, key]
        else:
            outcome = self._run(compiled.program, self_value)
            if len(_OUTCOMES) >= _OUTCOMES_BOUND:
                _OUTCOMES.clear()
            _OUTCOMES[compiled, key] = outcome
        if outcome is True or outcome is None:
            return
        if isinstance(outcome, str):
            self.failures.append(Failure(where, f"{outcome} evaluating rule: {text}"))
            return
        self.failures.append(Failure(where, self._message(rule, self_value)))

    def _run(self, program: celpy.Runner, self_value: Any) -> bool | str | None:
        """True or False; an error's text; None when the outcome rests on run-time values."""
        if self.reads is not None:
            self.reads.runtime = False
        result: Any
        try:
            result = program.evaluate({"self": self_value})
        except CELEvalError as exc:
            result = exc
        if isinstance(result, celtypes.BoolType) and result:
            return True
        if self.reads is not None and self.reads.runtime:
            return None
        if isinstance(result, CELEvalError):
            return _error_text(result)
        if isinstance(result, celtypes.BoolType):
            return False
        return f"the rule gave {result!r}, not a bool"

    def _message(self, rule: dict[str, Any], self_value: Any) -> str:
        expression = rule.get("messageExpression")
        if expression:
            compiled = compile_rule(expression)
            if compiled.program is not None:
                try:
                    message = compiled.program.evaluate({"self": self_value})
                except CELEvalError:
                    message = None
                if isinstance(message, str) and message.strip():
                    return str(message)
        return rule.get("message") or f"failed rule: {rule.get('rule', '')}"


def _nullable(schema: Any) -> bool:
    return isinstance(schema, dict) and bool(schema.get("nullable"))


def _field_path(field_path: Any) -> Path:
    """A rule's `fieldPath` (`.spec.x`, `.a['b.c']`) as path parts."""
    if not isinstance(field_path, str):
        return ()
    parts: list[str | int] = []
    rest = field_path
    while rest:
        if rest.startswith("."):
            name = rest[1:].split(".", 1)[0].split("[", 1)[0]
            parts.append(name)
            rest = rest[1 + len(name) :]
        elif rest.startswith("['") and "']" in rest:
            name, _, rest = rest[2:].partition("']")
            parts.append(name)
        elif rest.startswith("[") and "]" in rest:
            index, _, rest = rest[1:].partition("]")
            parts.append(int(index) if index.isdigit() else index)
        else:
            parts.append(rest)
            break
    return tuple(parts)


#: One error inside the text of an error that wraps it (celpy's `a && b` when both fail).
_NESTED_ERROR = re.compile(
    r"CELEvalError\(\*\(\\*([\"'])(.*?)\\*\1, <class \\*'\w+\\*'>, "
    r"(?:None|\(\\*([\"'])(.*?)\\*\3,?\))"
)
#: celpy's labels for Python exceptions, which say less than the exception does.
_LABELS = ("return error for overflow", "no such overload", "invalid_argument")


def _error_text(error: CELEvalError) -> str:
    """The (first) error's text, worded as the API server words it where the two differ."""
    message = str(error.args[0]) if error.args else "error"
    detail = error.args[2] if len(error.args) > 2 else None
    detail = detail[0] if isinstance(detail, tuple) and len(detail) == 1 else detail
    if message.startswith("found no matching overload"):
        for nested in _NESTED_ERROR.finditer(str(detail)):
            if not nested.group(2).startswith("found no matching overload"):
                message, detail = nested.group(2).replace("\\", ""), nested.group(4)
                break
    if message.startswith("no such member in mapping: "):
        return "no such key: " + message.removeprefix("no such member in mapping: ").strip("'\"")
    message = message.split(" (in activation", 1)[0]
    detail_text = str(detail).split(" (in activation", 1)[0] if detail else ""
    if message in _LABELS and detail_text:
        return detail_text
    return f"{message}: {detail_text}" if detail_text and len(detail_text) <= 200 else message

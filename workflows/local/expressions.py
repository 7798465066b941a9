"""Argo's three small languages, evaluated the way the Argo controller evaluates them.

- `{{...}}` placeholders, substituted from a scope of known variables;
- `when` conditions (govaluate): `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`, `!~`, `&&`, `||`,
  `!`, parentheses, numbers, quoted strings, `true`/`false`; a bare word is a string, so
  `{{tasks.flip.outputs.result}} == heads` works as in Argo's examples;
- `depends` (`a && (b.Failed || c.Succeeded)`), where a bare task name means
  `a.Succeeded || a.Skipped || a.Daemoned`;
- resource `successCondition` / `failureCondition`: comma-separated requirements on dotted
  paths of the object (`status.phase == Succeeded`, `status.failed > 0`, `a in (x,y)`).

`{{=expr}}` placeholders are Argo's expression templates (expr-lang), evaluated by `expr/`
over the same scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from workflows.exceptions import RunError
from workflows.local.scope import ABSENT

#: Variables an expression tag must find before it runs (Argo's ReplaceStrict prefixes).
STRICT_ROOTS = ("tasks", "steps")

PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)


def substitute(text: str, scope: Mapping[str, str], where: str, lenient: bool = False) -> str:
    """Replace every `{{name}}` with its value from `scope`.

    With `lenient`, a placeholder that cannot be resolved yet is left as it is (Argo's
    `allowUnresolved`), for a later pass with more variables known.

    Raises:
        RunError: a placeholder names nothing known, naming it and the field.
    """
    env: dict[str, Any] | None = None

    def replace(match: re.Match[str]) -> str:
        if not lenient:
            return resolve(match)
        try:
            return resolve(match)
        except RunError:
            return match.group(0)

    def resolve(match: re.Match[str]) -> str:
        nonlocal env
        name = match.group(1)
        if name.startswith("="):
            from workflows.local.expr import ExprError, evaluate, expression_env, render_result

            if env is None:
                env = expression_env(scope)
            try:
                return render_result(evaluate(name[1:].strip(), env, STRICT_ROOTS))
            except ExprError as exc:
                raise RunError(f"{where}: {exc}") from None
        if name in scope:
            if scope[name] == ABSENT:
                raise RunError(
                    f"{where}: unable to substitute {{{{{name}}}}}: output is an absent optional "
                    "(skipped/omitted node with no default); give the producer's output a "
                    "valueFrom.default"
                )
            return scope[name]
        raise RunError(f"{where}: unresolved {{{{{name}}}}}; known here: {_known(scope, name)}")

    return PLACEHOLDER.sub(replace, text)


def pure_reference(text: str) -> str | None:
    """The variable a string only refers to (`{{tasks.a.outputs.result}}`), else None."""
    match = PLACEHOLDER.fullmatch(text.strip())
    if match is None or match.group(1).startswith("="):
        return None
    return match.group(1)


def _known(scope: Mapping[str, str], name: str) -> str:
    head = name.split(".")[0]
    near = sorted(k for k in scope if k.split(".")[0] == head)
    return ", ".join(near[:12]) or "nothing of that kind"


def substitute_all(value: Any, scope: Mapping[str, str], where: str) -> Any:
    """`substitute` through nested lists and dicts (values only)."""
    if isinstance(value, str):
        return substitute(value, scope, where)
    if isinstance(value, list):
        return [substitute_all(v, scope, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute_all(v, scope, f"{where}.{k}") for k, v in value.items()}
    return value


# --- tokens shared by `when` and `depends` -----------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|=~|!~|<|>|!|\(|\)|,)"
    r"|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<word>[^\s()!<>=&|,'\"]+))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise RunError(f"cannot parse {text!r} at {text[pos:]!r}")
        kind = match.lastgroup or "op"
        value = match.group(kind)
        if kind == "str":
            value = bytes(value[1:-1], "utf-8").decode("unicode_escape")
        out.append((kind, value))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    """Precedence climbing over `||`, `&&`, `!`, comparisons and atoms."""

    def __init__(self, text: str, atom: Callable[[str, str], Any]) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.atom = atom

    def parse(self) -> Any:
        value = self._or()
        if self.pos != len(self.tokens):
            raise RunError(f"cannot parse {self.text!r}: unexpected {self.tokens[self.pos][1]!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise RunError(f"cannot parse {self.text!r}: it ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            left = _truth(left) or _truth(right)
        return left

    def _and(self) -> Any:
        left = self._not()
        while self._peek() == "&&":
            self._take()
            right = self._not()
            left = _truth(left) and _truth(right)
        return left

    def _not(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not _truth(self._not())
        return self._compare()

    def _compare(self) -> Any:
        left = self._primary()
        op = self._peek()
        if op in {"==", "!=", "<", "<=", ">", ">=", "=~", "!~"}:
            self._take()
            return _compare(left, op, self._primary())
        if op == "in" and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1][1] == "(":
            self._take()
            return any(_compare(left, "==", value) for value in self._list())
        return left

    def _list(self) -> list[Any]:
        """Govaluate's `(a, b, c)` after `in`."""
        self._take()  # "("
        values = []
        while self._peek() != ")":
            values.append(self._primary())
            if self._peek() == ",":
                self._take()
        self._take()
        return values

    def _primary(self) -> Any:
        kind, value = self._take()
        if kind == "op" and value == "(":
            inner = self._or()
            if self._take()[1] != ")":
                raise RunError(f"cannot parse {self.text!r}: missing ')'")
            return inner
        if kind == "op":
            raise RunError(f"cannot parse {self.text!r}: unexpected {value!r}")
        return self.atom(kind, value)


def _truth(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise RunError(f"{value!r} is not a boolean")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in {"=~", "!~"}:
        found = re.search(str(right), str(left)) is not None
        return found if op == "=~" else not found
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        pair: tuple[Any, Any] = (a, b)
    elif op in {"==", "!="}:
        pair = (
            str(left).lower() if isinstance(left, bool) else str(left),
            str(right).lower() if isinstance(right, bool) else str(right),
        )
    else:
        raise RunError(f"cannot compare {left!r} {op} {right!r}: not numbers")
    x, y = pair
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def evaluate_when(expression: str) -> bool:
    """Evaluate a `when` condition whose placeholders are already substituted."""

    def atom(kind: str, value: str) -> Any:
        if kind == "word" and value in {"true", "false"}:
            return value == "true"
        return value

    return _truth(_Parser(expression, atom).parse())


# --- depends -------------------------------------------------------------------------------

_RESULTS = {
    "Succeeded": {"Succeeded"},
    "Failed": {"Failed"},
    "Errored": {"Error"},
    "Skipped": {"Skipped"},
    "Omitted": {"Omitted"},
    "Daemoned": set(),
}


def evaluate_depends(
    expression: str, phases: Mapping[str, str], children: Mapping[str, list[str]]
) -> bool:
    """Evaluate `depends` given each finished task's phase (and its loop children's phases)."""

    def atom(kind: str, value: str) -> bool:
        if kind != "word":
            raise RunError(f"depends {expression!r}: unexpected {value!r}")
        task, _, result = value.partition(".")
        if task not in phases:
            raise RunError(f"depends {expression!r} names {task!r}, which is not a task here")
        phase = phases[task]
        if not result:
            return phase in {"Succeeded", "Skipped"}
        if result == "AnySucceeded":
            return "Succeeded" in children.get(task, [])
        if result == "AllFailed":
            kids = children.get(task, [])
            return bool(kids) and all(p == "Failed" for p in kids)
        if result not in _RESULTS:
            raise RunError(f"depends {expression!r}: unknown result {result!r} of {task!r}")
        return phase in _RESULTS[result]

    return _truth(_Parser(expression, atom).parse())


# --- resource conditions -------------------------------------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?P<key>[^\s!=<>]+)\s*(?P<op>==|=|!=|>|<| in | notin )\s*(?P<value>.*?)\s*$"
)


def lookup(obj: Any, path: str) -> Any:
    """A dotted path into an object (`status.conditions.0.type`); None when absent."""
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def _split_requirements(condition: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in condition:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in [*parts, current] if p.strip()]


def evaluate_condition(condition: str, obj: Mapping[str, Any], *, any_term: bool = False) -> bool:
    """Whether a resource template's condition holds for the object.

    A success condition holds when every requirement holds; a failure condition (`any_term`)
    when any one does, as Argo's executor matches them (`matchConditions` in resource.go).
    """
    terms = [t.strip() for t in _split_requirements(condition)]
    if any_term:
        return any(_requirement_holds(t, obj) for t in terms if t)
    return all(_requirement_holds(t, obj) for t in terms if t)


def _requirement_holds(requirement: str, obj: Mapping[str, Any]) -> bool:
    """One label-selector requirement against the object's JSON paths."""
    if requirement.startswith("!"):
        return lookup(obj, requirement[1:].strip()) is None
    match = _REQUIREMENT.match(requirement)
    if not match:
        return lookup(obj, requirement) is not None  # bare key: exists
    actual = lookup(obj, match["key"])
    op, expected = match["op"].strip(), match["value"].strip()
    if actual is None:
        return op in {"!=", "notin"}
    text = json.dumps(actual) if isinstance(actual, (bool, dict, list)) else str(actual)
    text = text.lower() if isinstance(actual, bool) else text
    if op in {"=", "=="}:
        return text == expected
    if op == "!=":
        return text != expected
    if op in {"in", "notin"}:
        values = {v.strip() for v in expected.strip("()").split(",")}
        return (text in values) == (op == "in")
    a, b = _number(actual), _number(expected)
    if a is None or b is None:
        return False
    return a > b if op == ">" else a < b

"""Argo's `{{=expression}}` templates: the expr-lang language over Argo's environment.

Argo (util/template/expression_template.go) evaluates `{{=...}}` with github.com/expr-lang/expr
v1.17 over `util/expr/env.GetFuncMap(scope)`: the scope's dotted keys expanded into nested maps,
plus `asInt`, `asFloat`, `jsonpath`, `toJson` and `sprig`. This package does the same in three
steps: a tokenizer, a precedence-climbing parser to a small AST (expr's own precedence table and
quirks: chained comparisons, `not in`, `?.` chains, `??` that cannot mix with other operators)
and an evaluator with expr's runtime semantics (int and float arithmetic, `/` always float, `==`
false between different types, errors where Go panics).

This module is the public API. The private modules, from syntax to values: `_tokens` (the
tokenizer), `_tree` (the syntax tree), `_parser`, `_evaluate` (the evaluator, and the variables
an expression needs), `_operators` (expr's operators), `_builtins` (expr's builtins and Argo's
own functions), `_jsonpath`, `_sprig`, and `_values` (Go values: types, equality, printing,
JSON; `Failure`, a Go panic or error, which `evaluate` reports as `ExprError`).

Not implemented, and reported as such: `let`, `if {} else {}`, `;` sequences, `::`, bytes
literals, the builtins groupBy, sortBy, reduce, now, date, duration, timezone, take, toPairs,
fromPairs, mean, median and the bit functions, methods of Go values, `#acc`, and the sprig
functions listed in `_sprig.SPRIG` without an implementation. Unlike Argo, literals are
not type-checked before the run: `1 == "a"` is false here and a compile error there.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping
from typing import Any

from workflows.exceptions import RunError
from workflows.local.expr._builtins import ARGO_FUNCTIONS
from workflows.local.expr._evaluate import Evaluator, missing_path, required_paths
from workflows.local.expr._parser import Parser
from workflows.local.expr._sprig import SPRIG
from workflows.local.expr._values import Failure, go_json
from workflows.local.scope import ABSENT


class ExprError(RunError):
    """An `{{=expression}}` cannot be evaluated.

    A syntax error, a variable that is not in the scope, a function that fails (where Go
    panics), a nil result, or a part of expr the local engine does not implement. The message
    names the expression and what failed.
    """


def _error(expression: str, what: str) -> ExprError:
    where = f" (in {{{{={expression}}}}})" if expression else ""
    return ExprError(f"failed to evaluate expression: {what}{where}")


def expression_env(scope: Mapping[str, str]) -> dict[str, Any]:
    """Argo's expression env for a scope (util/expr/env/env.go `GetFuncMap`).

    Dotted keys become nested maps (`inputs.parameters.x` is `env["inputs"]["parameters"]["x"]`),
    and a key that another key extends is dropped first (Argo's `removeConflicts`): with
    `workflow.parameters.json` present, the JSON list at `workflow.parameters` goes. Values stay
    strings, as Argo's are: `item` is the item's JSON text for a list or map item, and for a map
    item Argo also sets `item.<key>`, so `item` becomes a map of strings and `item.name` works.
    Then come `asInt`, `asFloat`, `jsonpath`, `toJson` and `sprig`, over any scope key so named.
    """
    # A skipped node's output without a default is absent: missing, as in Argo, never a value.
    keys = sorted(k for k, value in scope.items() if value != ABSENT)

    def extended(key: str) -> bool:
        at = bisect.bisect_left(keys, key + ".")
        return at < len(keys) and keys[at].startswith(key + ".")

    env: dict[str, Any] = {}
    for key in (k for k in keys if not extended(k)):
        *parents, leaf = key.split(".")
        node = env
        for part in parents:  # never a leaf: a key that another key extends is gone
            node = node.setdefault(part, {})
        node[leaf] = scope[key]
    return env | ARGO_FUNCTIONS | {"sprig": dict(SPRIG)}


def evaluate(expression: str, env: Mapping[str, Any], strict: Collection[str] | None = None) -> Any:
    """Parse and run one expression (the text between `{{=` and `}}`) over `env`.

    Args:
        expression: The expression.
        env: Variables and functions (`expression_env`).
        strict: Roots (`tasks`, `steps`) whose variables must all exist before the expression
            runs, as Argo's `ReplaceStrict` requires; None checks every variable. Others are
            only looked up when evaluation reaches them, so `a ? b : c` needs just one of b, c.

    Raises:
        ExprError: a syntax error; a variable the expression needs that the env lacks (as
            Argo: "failed to evaluate expression: inputs.parameters.x is missing"); a runtime
            error where Go panics (`jsonpath` of text that is not JSON, an index out of range,
            arithmetic on a string); a part of expr the local engine does not implement.
    """
    try:
        tree = Parser(expression).parse()
        for path in required_paths(tree):
            if strict is not None and path[0] not in strict:
                continue
            if (missing := missing_path(env, path)) is not None:
                raise Failure(missing)
        return Evaluator(env).eval(tree)
    except Failure as failure:
        raise _error(expression, str(failure)) from None
    except RecursionError:
        raise _error(expression, "the expression nests too deeply") from None


def render_result(value: Any, expression: str = "") -> str:
    """A result as Argo writes it into the surrounding text.

    A string as it is; anything else as compact JSON the way Go's `json.Marshal` writes it
    (`true`, `3`, `2.5`, `1e+21`, `["a","b"]`, maps with sorted keys, `<>&` escaped).

    Raises:
        ExprError: the result is nil (Argo refuses it) or cannot be JSON (NaN, infinity).
    """
    if isinstance(value, str):
        return value
    if value is None:
        raise _error(expression, "the result is nil; give a default with `?? 'value'`")
    try:
        return go_json(value)
    except Failure as failure:
        raise _error(expression, f"cannot marshal the result: {failure}") from None


def substitute_expressions(text: str, env: Mapping[str, Any]) -> str:
    """Replace every `{{=expression}}` in `text` by its rendered result.

    Tags are found as Argo's template engine (fasttemplate) finds them: from `{{` to the next
    `}}`; tags without the `=` prefix are left as they are.

    Raises:
        ExprError: an expression fails (see `evaluate` and `render_result`).
    """
    out, at = [], 0
    while (start := text.find("{{", at)) >= 0 and (end := text.find("}}", start + 2)) >= 0:
        out.append(text[at:start])
        tag = text[start + 2 : end]
        if tag.startswith("="):
            out.append(render_result(evaluate(tag[1:], env), tag[1:]))
        else:
            out.append(text[start : end + 2])
        at = end + 2
    return "".join(out) + text[at:]


__all__ = ["ExprError", "evaluate", "expression_env", "render_result", "substitute_expressions"]

"""Go values in Python: their types, equality, ordering, printing and JSON, as expr sees them.

Go values are Python values here: nil is None, a Go int (or int64) an int, a float64 a float,
a string a str, `[]any` a list and `map[string]any` a dict. `Failure` stands for a Go panic or
error inside expr; `workflows.local.expr.evaluate` reports it as `ExprError`. Strings are sliced
and indexed by UTF-8 byte, as Go does.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Func = Callable[..., Any]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)


class Failure(Exception):
    """Why an expression cannot be evaluated: a syntax error, a Go panic, an unsupported part."""


def unsupported(what: str) -> Failure:
    """A `Failure` for a part of expr or sprig that the local engine does not implement."""
    return Failure(
        f"{what} is not supported by the local engine; rewrite the expression without it"
    )


# --- Go values ----------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """Whether `value` is a Go int or float64 (a bool is neither)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


_GO_TYPES = {type(None): "<nil>", bool: "bool", int: "int", float: "float64", str: "string"}
_GO_TYPES |= {list: "[]interface {}", dict: "map[string]interface {}"}


def go_type(value: Any) -> str:
    """The Go type of `value`, as expr names it in its errors."""
    return _GO_TYPES.get(type(value), "func")


def wrap_int(value: int) -> int:
    """`value` wrapped into int64, as Go's integer arithmetic overflows."""
    return (value - INT64_MIN) % 2**64 + INT64_MIN


def to_int(value: Any) -> int:
    """Expr's `runtime.ToInt`: any number, floats truncated toward zero."""
    if is_number(value) and math.isfinite(value):
        return int(value)
    raise Failure(f"invalid operation: int({go_type(value)})")


def go_float(value: float, *, json_style: bool = False) -> str:
    """A float64 as Go prints it with `%v` or, with `json_style`, as `json.Marshal` writes it."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point, sign = len(digits) + int(exponent), "-" if value < 0 else ""
    if json_style:
        scientific = not 1e-6 <= abs(value) < 1e21
    else:
        scientific = not -4 <= point - 1 < 6
    if scientific:
        exp = f"{'-' if point <= 0 else '+'}{abs(point - 1):02d}"
        if json_style and exp.startswith("-0"):
            exp = "-" + exp[2:]
        return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{exp}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_sprint(value: Any) -> str:
    """`value` as Go's `fmt.Sprintf("%v", value)` prints it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(map(go_sprint, value)) + "]"
    if isinstance(value, dict):
        pairs = (f"{go_sprint(k)}:{go_sprint(v)}" for k, v in sorted(value.items()))
        return "map[" + " ".join(pairs) + "]"
    return str(value)


def go_json(value: Any, indent: str = "", *, escape_html: bool = True, prefix: str = "") -> str:
    """`value` as Go's `json.Marshal` (or `MarshalIndent` with `indent`) writes it.

    Maps come out with sorted keys; `<`, `>` and `&` are escaped unless `escape_html` is off.

    Raises:
        Failure: the value holds a NaN, an infinity or a function, which JSON cannot carry.
    """
    if value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Failure(f"json: unsupported value: {go_float(value)}")
        return go_float(value, json_style=True)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if escape_html:
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    inner, colon = prefix + indent, ": " if indent else ":"
    if isinstance(value, list):
        items, brackets = (
            [go_json(v, indent, escape_html=escape_html, prefix=inner) for v in value],
            "[]",
        )
    elif isinstance(value, dict):
        items = [
            go_json(str(k), escape_html=escape_html)
            + colon
            + go_json(value[k], indent, escape_html=escape_html, prefix=inner)
            for k in sorted(value)
        ]
        brackets = "{}"
    else:
        raise Failure(f"json: unsupported type: {go_type(value)}")
    if not items or not indent:
        return brackets[0] + ",".join(items) + brackets[1]
    return f"{brackets[0]}\n{inner}" + f",\n{inner}".join(items) + f"\n{prefix}{brackets[1]}"


def go_json_decode(text: str) -> Any:
    """`text` decoded as Go's `json.Unmarshal` into `any` does: every number is a float64."""

    def reject(constant: str) -> Any:
        raise ValueError(f"invalid character {constant[0]!r} looking for beginning of value")

    def number(literal: str) -> float:
        if math.isinf(value := float(literal)):
            raise ValueError(f"cannot unmarshal number {literal} into a float64")
        return value

    if not text.strip():
        raise Failure("unexpected end of JSON input")
    try:
        return json.loads(text, parse_int=number, parse_float=number, parse_constant=reject)
    except ValueError as exc:
        raise Failure(f"invalid JSON {text[:60]!r}: {exc}") from None


def go_equal(a: Any, b: Any) -> bool:
    """Expr's `==`: numbers compare by value, arrays element by element, the rest deeply."""
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(go_equal, a, b))
    return deep_equal(a, b)


def deep_equal(a: Any, b: Any) -> bool:
    """Go's `reflect.DeepEqual`: the same types, recursively (an int never equals a float)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(deep_equal, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(deep_equal(v, b[k]) for k, v in a.items())
    return bool(a == b)


_COMPARE = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


def go_compare(op: str, a: Any, b: Any) -> bool:
    """Expr's `<`, `>`, `<=`, `>=`: between two numbers or two strings only."""
    if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        return bool(_COMPARE[op](a, b))
    raise Failure(f"invalid operation: {go_type(a)} {op} {go_type(b)}")


def str_arg(value: Any, where: str = "argument") -> str:
    """`value` if it is a string; else a `Failure` that names `where`."""
    if isinstance(value, str):
        return value
    raise Failure(f"{where}: expected a string, got {go_type(value)}")


def int_arg(value: Any, where: str = "argument") -> int:
    """`value` if it is an int; else a `Failure` that names `where`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Failure(f"{where}: expected an int, got {go_type(value)}")


def list_arg(value: Any, where: str = "argument") -> list[Any]:
    """`value` if it is an array; else a `Failure` that names `where`."""
    if isinstance(value, list):
        return value
    raise Failure(f"{where}: expected an array, got {go_type(value)}")


def map_arg(value: Any, where: str = "argument") -> dict[str, Any]:
    """`value` if it is a map; else a `Failure` that names `where`."""
    if isinstance(value, dict):
        return value
    raise Failure(f"{where}: expected a map, got {go_type(value)}")


def go_split(text: str, sep: str, n: int, *, after: bool = False) -> list[str]:
    """Go's `strings.SplitN` (`SplitAfterN` with `after`); n < 0 means no limit."""
    if n == 0:
        return []
    if sep == "":
        parts = list(text)
        return parts if n < 0 or len(parts) <= n else parts[: n - 1] + ["".join(parts[n - 1 :])]
    parts = text.split(sep, n - 1 if n > 0 else -1)
    return [p + sep for p in parts[:-1]] + parts[-1:] if after else parts


def go_regex(pattern: Any) -> re.Pattern[str]:
    """`pattern` compiled, or a `Failure` as Go's `regexp.Compile` reports a bad pattern."""
    try:
        return re.compile(str_arg(pattern, "regexp"))
    except re.error as exc:
        raise Failure(f"error parsing regexp {pattern!r}: {exc}") from None


def regex_search(pattern: Any, text: Any) -> bool:
    """Go's `regexp.MatchString` (an unanchored search), as expr's `matches` uses it."""
    return go_regex(pattern).search(str_arg(text, "matches")) is not None

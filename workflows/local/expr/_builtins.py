"""Expr's builtins that take no predicate, and Argo's own functions (`asInt`, `jsonpath`, ...)."""

from __future__ import annotations

import base64
import binascii
import functools
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from workflows.local.expr._jsonpath import jsonpath
from workflows.local.expr._operators import fetch
from workflows.local.expr._values import (
    GO_SPACE,
    INT64_MAX,
    INT64_MIN,
    Failure,
    Func,
    go_compare,
    go_equal,
    go_json,
    go_json_decode,
    go_split,
    go_sprint,
    go_type,
    int_arg,
    is_number,
    list_arg,
    map_arg,
    str_arg,
    to_int,
    wrap_int,
)

# --- conversions ------------------------------------------------------------------------------


def builtin_int(value: Any) -> int:
    """Expr's `int()`, Argo's `asInt()`: numbers truncate, strings parse as decimal integers."""
    if isinstance(value, str):
        if re.fullmatch(r"[+-]?[0-9]+", value) and INT64_MIN <= int(value) <= INT64_MAX:
            return int(value)
        raise Failure(f"invalid operation: int({value})")
    return to_int(value)


def builtin_float(value: Any) -> float:
    """Expr's `float()`, Argo's `asFloat()`: numbers convert, strings parse as Go floats."""
    if isinstance(value, str):
        number = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)"
        if re.fullmatch(number, value, re.IGNORECASE):
            result = float(value)
            if not math.isinf(result) or "inf" in value.lower():
                return result
        raise Failure(f"invalid operation: float({value})")
    if is_number(value):
        return float(value)
    raise Failure(f"invalid operation: float({go_type(value)})")


# --- expr-lang builtins (those that take no predicate) --------------------------------------


def _len(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise Failure(f"invalid argument for len (type {go_type(value)})")


def _type(value: Any) -> str:
    names = {"<nil>": "nil", "float64": "float", "[]interface {}": "array"}
    return names.get(go_type(value), "map" if isinstance(value, dict) else go_type(value))


def _abs(value: Any) -> int | float:
    if not is_number(value):
        raise Failure(f"invalid argument for abs (type {go_type(value)})")
    return wrap_int(abs(value)) if isinstance(value, int) else abs(value)


def _rounding(name: str, rule: Callable[[float], float]) -> Func:
    def run(value: Any) -> float:
        if not is_number(value):
            raise Failure(f"invalid argument for {name} (type {go_type(value)})")
        return float(rule(value)) if isinstance(value, float) else float(value)

    return run


def _go_round(value: float) -> float:
    whole = math.trunc(value)
    return whole + math.copysign(1, value) if abs(value - whole) >= 0.5 else whole


def _numbers(name: str, args: tuple[Any, ...]) -> list[int | float]:
    found: list[int | float] = []
    for arg in args:
        if isinstance(arg, list):
            found.extend(_numbers(name, tuple(arg)))
        elif is_number(arg):
            found.append(arg)
        else:
            raise Failure(f"invalid argument for {name} (type {go_type(arg)})")
    return found


def _extreme(name: str, better: Callable[[Any, Any], bool]) -> Func:
    def run(*args: Any) -> Any:
        if not args:
            raise Failure(f"not enough arguments to call {name}")
        if len(args) == 1 and not is_number(args[0]) and not isinstance(args[0], list):
            return args[0]
        best = None
        for value in _numbers(name, args):
            best = value if best is None or better(value, best) else best
        return best

    return run


def repeat(text: Any, n: Any) -> str:
    """Expr's `repeat()`: `text` `n` times, up to a million copies."""
    count = int_arg(n, "repeat")
    if not 0 <= count <= 10**6:
        raise Failure(f"invalid argument for repeat (expected 0 to 1e6 copies, got {count})")
    return str_arg(text, "repeat") * count


def _first_last(index: int) -> Func:
    def run(value: Any) -> Any:
        data = value.encode() if isinstance(value, str) else value
        return data[index] if isinstance(data, list | bytes) and data else None

    return run


def _get(value: Any, key: Any) -> Any:
    """Expr's `get()`: `fetch`, but nil where `fetch` fails on a missing key or index."""
    if isinstance(value, dict):
        return fetch(value, key)
    if isinstance(value, list | str):
        data = value.encode() if isinstance(value, str) else value
        index = to_int(key)
        return data[index] if -len(data) <= index < len(data) else None
    return None


def _from_base64(text: Any) -> str:
    try:
        return base64.b64decode(str_arg(text, "fromBase64"), validate=True).decode(
            "utf-8", "replace"
        )
    except binascii.Error as exc:
        raise Failure(f"illegal base64 data: {exc}") from None


def _uniq(items: Any) -> list[Any]:
    unique: list[Any] = []
    for item in list_arg(items, "uniq"):
        if not any(go_equal(item, seen) for seen in unique):
            unique.append(item)
    return unique


def _flatten(items: Any) -> list[Any]:
    flat: list[Any] = []
    for item in list_arg(items, "flatten"):
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _sort(items: Any, order: Any = "asc") -> list[Any]:
    if order not in ("asc", "desc"):
        raise Failure(f"invalid order {go_sprint(order)}, expected asc or desc")

    def compare(a: Any, b: Any) -> int:
        return -1 if go_compare("<", a, b) else (1 if go_compare("<", b, a) else 0)

    return sorted(
        list_arg(items, "sort"), key=functools.cmp_to_key(compare), reverse=order == "desc"
    )


BUILTINS: dict[str, Func] = {
    "len": _len,
    "type": _type,
    "abs": _abs,
    "ceil": _rounding("ceil", math.ceil),
    "floor": _rounding("floor", math.floor),
    "round": _rounding("round", _go_round),
    "int": builtin_int,
    "float": builtin_float,
    "string": go_sprint,
    "trim": lambda s, cut=None: str_arg(s, "trim").strip(GO_SPACE if cut is None else str_arg(cut)),
    "trimPrefix": lambda s, p=" ": str_arg(s, "trimPrefix").removeprefix(str_arg(p)),
    "trimSuffix": lambda s, p=" ": str_arg(s, "trimSuffix").removesuffix(str_arg(p)),
    "upper": lambda s: str_arg(s, "upper").upper(),
    "lower": lambda s: str_arg(s, "lower").lower(),
    "split": lambda s, sep, n=-1: go_split(str_arg(s, "split"), str_arg(sep), to_int(n)),
    "splitAfter": lambda s, sep, n=-1: go_split(
        str_arg(s, "splitAfter"), str_arg(sep), to_int(n), after=True
    ),
    "replace": lambda s, old, new, n=-1: str_arg(s, "replace").replace(
        str_arg(old), str_arg(new), to_int(n)
    ),
    "repeat": repeat,
    "join": lambda items, glue="": str_arg(glue).join(
        str_arg(i, "join") for i in list_arg(items, "join")
    ),
    "indexOf": lambda s, sub: str_arg(s).encode().find(str_arg(sub).encode()),
    "lastIndexOf": lambda s, sub: str_arg(s).encode().rfind(str_arg(sub).encode()),
    "hasPrefix": lambda s, p: str_arg(s, "hasPrefix").startswith(str_arg(p)),
    "hasSuffix": lambda s, p: str_arg(s, "hasSuffix").endswith(str_arg(p)),
    "max": _extreme("max", operator.gt),
    "min": _extreme("min", operator.lt),
    "toJSON": lambda v: go_json(v, "  "),
    "fromJSON": lambda s: go_json_decode(str_arg(s, "fromJSON")),
    "toBase64": lambda s: base64.b64encode(str_arg(s, "toBase64").encode()).decode(),
    "fromBase64": _from_base64,
    "first": _first_last(0),
    "last": _first_last(-1),
    "get": _get,
    "keys": lambda m: list(map_arg(m, "keys")),
    "values": lambda m: list(map_arg(m, "values").values()),
    "reverse": lambda items: list_arg(items, "reverse")[::-1],
    "uniq": _uniq,
    "concat": lambda *lists: [v for items in lists for v in list_arg(items, "concat")],
    "flatten": _flatten,
    "sort": _sort,
}


# --- Argo's own functions ----------------------------------------------------------------


def to_json(value: Any) -> str:
    """Argo's `toJson(v)`: compact `json.Marshal`."""
    return go_json(value)


ARGO_FUNCTIONS: dict[str, Func] = {
    "asInt": builtin_int,
    "asFloat": builtin_float,
    "jsonpath": jsonpath,
    "toJson": to_json,
}

"""Expr's operators on Go values: arithmetic, comparison, membership, indexing and slicing."""

from __future__ import annotations

import math
from typing import Any

from workflows.local.expr._values import (
    Failure,
    go_compare,
    go_equal,
    go_sprint,
    go_type,
    is_number,
    regex_search,
    to_int,
    wrap_int,
)


def unary(op: str, value: Any) -> Any:
    """Expr's `not`, `!`, `-` and `+`."""
    if op in ("not", "!"):
        if isinstance(value, bool):
            return not value
        raise Failure(f"invalid operation: {op} {go_type(value)} (expected a bool)")
    if not is_number(value):
        raise Failure(f"invalid operation: {op} {go_type(value)}")
    if op == "+":
        return value
    return wrap_int(-value) if isinstance(value, int) else -value


def binary(op: str, a: Any, b: Any) -> Any:
    """Expr's binary operators but the short-circuiting ones (`and`, `or`, `??`)."""
    if op in ("==", "!="):
        return go_equal(a, b) == (op == "==")
    if op in ("<", ">", "<=", ">="):
        return go_compare(op, a, b)
    if op == "in":
        return _contains(b, a)
    if op in ("matches", "contains", "startsWith", "endsWith"):
        if a is None or b is None:
            return False
        if op == "matches":
            return regex_search(b, a)
        if not (isinstance(a, str) and isinstance(b, str)):
            raise Failure(f"invalid operation: {go_type(a)} {op} {go_type(b)}")
        return {"contains": b in a, "startsWith": a.startswith(b), "endsWith": a.endswith(b)}[op]
    if op == "..":
        return list(range(to_int(a), to_int(b) + 1))
    return _arith(op, a, b)


def _arith(op: str, a: Any, b: Any) -> Any:
    """Expr's arithmetic: int with int stays int (int64), any float makes float64."""
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (is_number(a) and is_number(b)):
        raise Failure(f"invalid operation: {go_type(a)} {op} {go_type(b)}")
    if op == "/":
        if b == 0:  # Go float division: ±Inf, or NaN for 0/0
            return math.nan if a == 0 else math.copysign(math.inf, a)
        return float(a) / float(b)
    if op in ("**", "^"):  # Go's math.Pow: overflow is ±Inf, a complex result is NaN
        try:
            return math.pow(a, b)
        except OverflowError:
            return math.copysign(math.inf, a) if float(b).is_integer() and b % 2 else math.inf
        except ValueError:
            return math.inf if a == 0 else math.nan
    if op == "%":
        if isinstance(a, float) or isinstance(b, float):
            raise Failure(f"invalid operation: {go_type(a)} % {go_type(b)}")
        if b == 0:
            raise Failure("runtime error: integer divide by zero")
        return abs(a) % abs(b) * (1 if a >= 0 else -1)
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    return wrap_int(result) if isinstance(result, int) else result


def _contains(haystack: Any, needle: Any) -> bool:
    """Expr's `in`: an element of an array, a key of a map; nothing is in nil."""
    if haystack is None:
        return False
    if isinstance(haystack, list):
        return any(go_equal(item, needle) for item in haystack)
    if isinstance(haystack, dict):
        if not isinstance(needle, str | None):
            raise Failure(f"cannot use a {go_type(needle)} as a key of a map")
        return ("" if needle is None else needle) in haystack
    raise Failure(f'operator "in" not defined on {go_type(haystack)}')


def fetch(target: Any, key: Any) -> Any:
    """Expr's `runtime.Fetch`: a missing map key is nil, a bad index panics."""
    if isinstance(target, dict):
        if not isinstance(key, str | None):
            raise Failure(f"cannot use a {go_type(key)} as a key of a map")
        return target.get("" if key is None else key)
    if isinstance(target, list | str):
        data = target.encode() if isinstance(target, str) else target
        index = to_int(key)
        position = index + len(data) if index < 0 else index
        if not 0 <= position < len(data):
            raise Failure(f"index out of range: {position} (array length is {len(data)})")
        return data[position]
    raise Failure(f"cannot fetch {go_sprint(key)} from {go_type(target)}")


def slice_of(target: Any, start: Any, stop: Any) -> Any:
    """Expr's `a[start:stop]`: bounds clamp to the array or string (of bytes) instead of failing."""
    if not isinstance(target, list | str):
        raise Failure(f"cannot slice a {go_type(target)}")
    data = target.encode() if isinstance(target, str) else target
    size = len(data)
    first, end = to_int(start), size if stop is None else to_int(stop)
    first = max(first + size if first < 0 else first, 0)
    end = min(max(end + size if end < 0 else end, 0), size)
    part = data[min(first, end) : end]
    return part.decode("utf-8", "replace") if isinstance(part, bytes) else part

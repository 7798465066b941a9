"""Argo's `jsonpath(json, path)`: a JSON document queried as evilmonkeyinc/jsonpath does."""

from __future__ import annotations

import re
from typing import Any

from workflows.local.expr._values import (
    Failure,
    go_json_decode,
    list_arg,
    map_arg,
    str_arg,
    unsupported,
)


def jsonpath(json_text: Any, path: Any) -> Any:
    """Argo's `jsonpath(json, path)`: decode the JSON, then query it as evilmonkeyinc/jsonpath.

    One value for a path of keys and indexes (`$.a[0].b`); a list for a wildcard, recursive
    descent, union or range (`$[*].b`, `$..b`, `$[0,1]`, `$[1:3]`). Filters and scripts
    (`[?(...)]`, `[(...)]`) are not supported.

    Raises:
        Failure: the text is not JSON (Argo panics), the path is malformed, a key or index
            of the path is missing.
    """
    path = str_arg(path, "jsonpath")
    data = go_json_decode(str_arg(json_text, "jsonpath"))
    return _jp_apply(_jp_parse(path), 0, data)


def _jp_parse(path: str) -> list[tuple[Any, ...]]:
    if not path.startswith("$"):
        raise Failure(f"jsonpath {path!r}: a path starts with '$'")
    tokens: list[tuple[Any, ...]] = []
    at = 1
    while at < len(path):
        if path.startswith("..", at):
            tokens.append(("recursive",))
            at += 2
            if at < len(path) and path[at] != "[":
                at = _jp_name(path, at, tokens)
        elif path[at] == ".":
            at = _jp_name(path, at + 1, tokens)
        elif path[at] == "[":
            end = _jp_close(path, at)
            tokens.append(_jp_subscript(path, path[at + 1 : end].strip()))
            at = end + 1
        else:
            raise Failure(f"jsonpath {path!r}: unexpected {path[at]!r} at {at}")
    return tokens


def _jp_name(path: str, start: int, tokens: list[tuple[Any, ...]]) -> int:
    """Read the `name` of `.name` at `start` into `tokens`; where the name ends."""
    end = min(
        (i for i in (path.find(".", start), path.find("[", start)) if i >= 0), default=len(path)
    )
    name = path[start:end].strip()
    if not name:
        raise Failure(f"jsonpath {path!r}: a name is missing at {start}")
    tokens.append({"*": ("wildcard",), "length": ("length",)}.get(name, ("key", name)))
    return end


def _jp_close(path: str, start: int) -> int:
    quote, at = "", start + 1
    while at < len(path):
        char = path[at]
        if quote and char == "\\":
            at += 1
        elif char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        elif char == "]" and not quote:
            return at
        at += 1
    raise Failure(f"jsonpath {path!r}: '[' at {start} is never closed")


def _jp_subscript(path: str, body: str) -> tuple[Any, ...]:
    if body == "*":
        return ("wildcard",)
    if body[:1] in ("?", "("):
        raise unsupported(f"the jsonpath filter or script [{body}] in {path!r}")
    parts = re.findall(r"""'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[^,]+""", body)
    if len(parts) > 1:
        return ("union", [_jp_arg(path, p) for p in parts])
    if ":" in body and body[0] not in "'\"":
        bounds = [p.strip() for p in body.split(":")]
        if len(bounds) > 3 or not all(re.fullmatch(r"[+-]?\d*", b) for b in bounds):
            raise Failure(f"jsonpath {path!r}: bad range [{body}]")
        start, stop, step = [int(b) if b else None for b in (*bounds, "")[:3]]
        return ("range", start, stop, step)
    arg = _jp_arg(path, body)
    return ("key", arg) if isinstance(arg, str) else ("index", arg)


def _jp_arg(path: str, text: str) -> str | int:
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    raise Failure(f"jsonpath {path!r}: bad subscript [{text}]")


def _jp_apply(tokens: list[tuple[Any, ...]], at: int, current: Any) -> Any:
    if at == len(tokens):
        return current
    kind, rest = tokens[at][0], at + 1
    if kind == "key":
        key = tokens[at][1]
        if key not in map_arg(current, f"jsonpath key {key!r}"):
            raise Failure(f"jsonpath: key {key!r} not found")
        return _jp_apply(tokens, rest, current[key])
    if kind == "index":
        items, index = list_arg(current, "jsonpath index"), tokens[at][1]
        if not -len(items) <= index < len(items):
            raise Failure(f"jsonpath: index [{index}] out of range")
        return _jp_apply(tokens, rest, items[index])
    if kind == "length":
        if isinstance(current, dict):
            return _jp_apply(tokens, rest, current.get("length", len(current)))
        size = (
            len(current.encode()) if isinstance(current, str) else len(list_arg(current, "length"))
        )
        return _jp_apply(tokens, rest, size)
    if kind == "recursive":
        return _jp_recursive(tokens, rest, current)
    if kind == "wildcard":
        values = [current[k] for k in sorted(current)] if isinstance(current, dict) else current
        return _jp_each(tokens, rest, list_arg(values, "jsonpath wildcard"))
    values = (
        _jp_union(tokens[at][1], current) if kind == "union" else _jp_range(tokens[at], current)
    )
    if rest < len(tokens) and tokens[rest][0] == "index":
        return _jp_apply(tokens, rest, values)
    return _jp_each(tokens, rest, values)


def _jp_each(tokens: list[tuple[Any, ...]], at: int, values: list[Any]) -> list[Any]:
    if at == len(tokens):
        return list(values)
    found = []
    for value in values:
        try:
            result = _jp_apply(tokens, at, value)
        except Failure:
            continue
        if result is not None:
            found.append(result)
    return found


def _jp_recursive(tokens: list[tuple[Any, ...]], at: int, current: Any) -> list[Any]:
    """`..`: the rest of the path applied at every node, depth first, lists flattened once."""
    if current is None:
        return []
    if at == len(tokens):
        found = [current]
    else:
        try:
            result = _jp_apply(tokens, at, current)
        except Failure:
            result = None
        found = result if isinstance(result, list) else [] if result is None else [result]
    children = [current[k] for k in sorted(current)] if isinstance(current, dict) else current
    for child in children if isinstance(children, list) else []:
        found.extend(_jp_recursive(tokens, at, child))
    return found


def _jp_union(args: list[str | int], current: Any) -> list[Any]:
    if all(isinstance(a, str) for a in args):
        mapping = map_arg(current, "jsonpath union")
        return [mapping[a] for a in args if isinstance(a, str) and a in mapping]
    if not all(isinstance(a, int) for a in args):
        raise Failure("jsonpath: a union mixes keys and indexes")
    items = list_arg(current, "jsonpath union")
    return [items[i] for i in args if isinstance(i, int) and -len(items) <= i < len(items)]


def _jp_range(token: tuple[Any, ...], current: Any) -> list[Any]:
    items = list_arg(current, "jsonpath range")
    _, start, stop, step = token

    def bound(value: int | None, default: int) -> int:
        if value is None:
            return default
        return min(max(value + len(items) if value < 0 else value, 0), len(items))

    first, end, step = bound(start, 0), bound(stop, len(items)), 1 if step is None else step
    if step == 0:
        raise Failure("jsonpath: a range step of 0")
    return [
        items[i] for i in (range(first, end, step) if step > 0 else range(end - 1, first - 1, step))
    ]

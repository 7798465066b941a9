"""The evaluator: a tree run over an env with expr's runtime semantics, where Go panics fail."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflows.local.expr._builtins import BUILTINS
from workflows.local.expr._operators import binary, fetch, slice_of, unary
from workflows.local.expr._tree import (
    PREDICATES,
    Array,
    Binary,
    Builtin,
    Call,
    Chain,
    Cond,
    Ident,
    Lit,
    MapLit,
    Member,
    Node,
    Pointer,
    Predicate,
    Slice,
    Unary,
    member_path,
    walk,
)
from workflows.local.expr._values import Failure, go_type

# --- the variables an expression needs --------------------------------------------------------


def required_paths(tree: Node) -> list[tuple[str, ...]]:
    """The variable paths Argo requires to be in the env (expression_template.go:getIdentifiers).

    Every identifier, and every member path of names (`a.b["c"]`), except member paths on the
    left of `??` and the receivers of `?.`.
    """
    guarded: set[int] = set()
    for node in walk(tree):
        if isinstance(node, Binary) and node.op == "??":
            guarded |= {id(n) for n in walk(node.left) if isinstance(n, Member)}
        elif isinstance(node, Member) and node.optional and isinstance(node.node, Member):
            guarded.add(id(node.node))
    paths: list[tuple[str, ...]] = []
    for node in walk(tree):
        path = (node.name,) if isinstance(node, Ident) else member_path(node)
        if path and id(node) not in guarded and path not in paths:
            paths.append(path)
    return paths


def missing_path(env: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    """Why `path` is not in `env` (with what is there instead), or None when it is."""
    current: Any = env
    for depth, part in enumerate(path):
        if not isinstance(current, Mapping) or part not in current:
            where = ".".join(path[:depth]) or "the scope"
            if isinstance(current, Mapping):
                names = sorted(current)
                listed = ", ".join(names[:15]) + (", ..." if len(names) > 15 else "")
                return f"{'.'.join(path)} is missing ({where} has: {listed or 'nothing'})"
            return f"{'.'.join(path)} is missing ({where} is a {go_type(current)}, not a map)"
        current = current[part]
    return None


# --- evaluation -----------------------------------------------------------------------------


class _NilChain(Exception):
    """An optional member (`?.`) met nil: its whole chain is nil."""


@dataclass
class _Frame:
    item: Any
    index: int


class Evaluator:
    """Runs a syntax tree over an env, with `#` bound to the element inside predicates."""

    def __init__(self, env: Mapping[str, Any]) -> None:
        self.env = env

    def eval(self, node: Node, frame: _Frame | None = None) -> Any:
        match node:
            case Lit(value=value):
                return value
            case Ident(name=name):
                if name not in self.env:
                    raise Failure(f"unknown name {name}")
                return self.env[name]
            case Pointer(name=name):
                assert frame is not None, "the parser allows pointers in predicates only"
                return frame.index if name == "index" else frame.item
            case Unary(op=op, node=operand):
                return unary(op, self.eval(operand, frame))
            case Binary():
                return self._binary(node, frame)
            case Cond(cond=cond, yes=yes, no=no):
                test = self.eval(cond, frame)
                if not isinstance(test, bool):
                    raise Failure(f"a condition is a {go_type(test)}, not a bool")
                return self.eval(yes if test else no, frame)
            case Member(node=receiver, prop=prop, optional=optional):
                target = self.eval(receiver, frame)
                if optional and target is None:
                    raise _NilChain
                return fetch(target, self.eval(prop, frame))
            case Chain(node=inner):
                try:
                    return self.eval(inner, frame)
                except _NilChain:
                    return None
            case Slice(node=receiver, start=start, stop=stop):
                target = self.eval(receiver, frame)
                first = 0 if start is None else self.eval(start, frame)
                return slice_of(target, first, None if stop is None else self.eval(stop, frame))
            case Call(callee=callee, args=args):
                function = self.eval(callee, frame)
                values = [self.eval(arg, frame) for arg in args]
                return _invoke(_describe(callee), function, values)
            case Builtin(name=name, args=args) if name in PREDICATES:
                return self._predicate(name, args, frame)
            case Builtin(name=name, args=args):
                values = [self.eval(arg, frame) for arg in args]
                return _invoke(name, BUILTINS[name], values)
            case Array(items=items):
                return [self.eval(item, frame) for item in items]
            case MapLit(pairs=pairs):
                result: dict[str, Any] = {}
                for pair in pairs:
                    key, value = self.eval(pair.key, frame), self.eval(pair.value, frame)
                    if not isinstance(key, str):
                        raise Failure(f"a map key is a {go_type(key)}, not a string")
                    result.setdefault(key, value)  # expr keeps the first of repeated keys
                return result
        raise Failure(f"cannot evaluate {type(node).__name__}")

    def _binary(self, node: Binary, frame: _Frame | None) -> Any:
        op = node.op
        if op in ("and", "&&", "or", "||"):
            left = self.eval(node.left, frame)
            if not isinstance(left, bool):
                raise Failure(f"invalid operation: {go_type(left)} {op} ... (expected a bool)")
            return left if left == (op in ("or", "||")) else self.eval(node.right, frame)
        if op == "??":
            left = self.eval(node.left, frame)
            return left if left is not None else self.eval(node.right, frame)
        return binary(op, self.eval(node.left, frame), self.eval(node.right, frame))

    def _predicate(self, name: str, args: tuple[Node, ...], frame: _Frame | None) -> Any:
        """all, any, none, one, filter, map, count, sum, find and friends, with `#` bound."""
        items = self.eval(args[0], frame)
        if not isinstance(items, list):
            raise Failure(f"{name}() needs an array, not a {go_type(items)}")
        body = args[1].node if len(args) > 1 and isinstance(args[1], Predicate) else None

        def result(index: int) -> Any:
            return items[index] if body is None else self.eval(body, _Frame(items[index], index))

        indexes = range(len(items))
        if name == "map":
            return [result(index) for index in indexes]
        if name == "sum":
            return functools.reduce(lambda total, i: binary("+", total, result(i)), indexes, 0)
        if name == "all":
            return all(_truth(name, result(index)) for index in indexes)
        hits = (
            i
            for i in (reversed(indexes) if name.startswith("findLast") else indexes)
            if _truth(name, result(i))
        )
        if name in ("filter", "count", "one"):
            found = [items[index] for index in hits]
            return found if name == "filter" else len(found) if name == "count" else len(found) == 1
        first = next(hits, None)
        if name in ("any", "none"):
            return (first is not None) == (name == "any")
        if name in ("find", "findLast"):
            return None if first is None else items[first]
        return -1 if first is None else first


def _truth(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Failure(f"the predicate of {name}() gave a {go_type(value)}, not a bool")


def _describe(callee: Node) -> str:
    path = member_path(callee) if isinstance(callee, Member) else None
    return callee.name if isinstance(callee, Ident) else ".".join(path) if path else "method"


def _invoke(name: str, function: Any, args: list[Any]) -> Any:
    """Call a function of the env or a builtin; a Python error in it is a Go panic."""
    if not callable(function):
        raise Failure(f"{name} is a {go_type(function)}, not a function")
    try:
        signature = inspect.signature(function)
        signature.bind(*args)
    except ValueError:
        pass  # a builtin without a signature: calling it tells
    except TypeError:
        raise Failure(f"{name}(): wrong number of arguments ({len(args)} given)") from None
    try:
        return function(*args)
    except Failure as failure:
        named = str(failure).startswith((name, name.rsplit(".", 1)[-1]))
        raise Failure(str(failure) if named else f"{name}(): {failure}") from None
    except Exception as exc:  # any error inside a function is a Go panic there
        raise Failure(f"{name}(): {exc}") from None

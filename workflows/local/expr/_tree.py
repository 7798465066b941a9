"""The syntax tree of an expression, and walks over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Node:
    """A node of the syntax tree; identity matters (the guards of `??` mark nodes)."""


@dataclass(eq=False)
class Lit(Node):
    value: Any


@dataclass(eq=False)
class Ident(Node):
    name: str


@dataclass(eq=False)
class Pointer(Node):
    name: str  # "" for `#` (the element), "index" for `#index`


@dataclass(eq=False)
class Unary(Node):
    op: str
    node: Node


@dataclass(eq=False)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(eq=False)
class Cond(Node):
    cond: Node
    yes: Node
    no: Node


@dataclass(eq=False)
class Member(Node):
    node: Node
    prop: Node
    optional: bool


@dataclass(eq=False)
class Chain(Node):
    """Where an optional member chain (`a?.b.c`) stops, with nil, when its receiver is nil."""

    node: Node


@dataclass(eq=False)
class Slice(Node):
    node: Node
    start: Node | None
    stop: Node | None


@dataclass(eq=False)
class Call(Node):
    callee: Node
    args: tuple[Node, ...]


@dataclass(eq=False)
class Builtin(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(eq=False)
class Predicate(Node):
    node: Node


@dataclass(eq=False)
class Array(Node):
    items: tuple[Node, ...]


@dataclass(eq=False)
class Pair(Node):
    key: Node
    value: Node


@dataclass(eq=False)
class MapLit(Node):
    pairs: tuple[Pair, ...]


# The builtins whose second argument is a predicate over `#`, and whether it may be left out.
PREDICATES = dict.fromkeys(("all", "none", "any", "one", "filter", "map", "find"), False)
PREDICATES |= dict.fromkeys(("findIndex", "findLast", "findLastIndex"), False)
PREDICATES |= {"count": True, "sum": True}  # name: whether the predicate is optional


def walk(node: Node) -> Iterator[Node]:
    """Every node below `node` and then `node` itself, in expr's `ast.Walk` order."""
    for value in vars(node).values():  # the fields, in the order they are declared
        for child in value if isinstance(value, tuple) else (value,):
            if isinstance(child, Node):
                yield from walk(child)
    yield node


def member_path(node: Node) -> tuple[str, ...] | None:
    """The names of a member path of names (`a.b["c"]` is `("a", "b", "c")`), else None."""
    parts: list[str] = []
    while isinstance(node, Member):
        if node.optional or not (isinstance(node.prop, Lit) and isinstance(node.prop.value, str)):
            return None
        parts.insert(0, node.prop.value)
        node = node.node
    return (node.name, *parts) if isinstance(node, Ident) and parts else None

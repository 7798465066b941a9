"""Manifest values as CEL sees them, typed by their schema.

The API server binds `self` to a value typed by the structural schema: `integer` is int,
`number` double, strings with `format: duration`/`date-time`/`byte` are durations, timestamps
and bytes. Property names that are CEL keywords or hold `.`, `-`, `/` or `__` are escaped
(`namespace` reads `__namespace__`), map keys are not. An object's `metadata`, at the root or
in an embedded resource, shows only `name` and `generateName`, with `name` already generated
from `generateName` (the API server names an object before it validates it).

Values filled in at run time (Argo's `{{...}}` in an embedded manifest) become
`RuntimeString`s; maps and lists that hold them record in a `Reads` whether a rule read one,
so that a rule whose outcome depends on them is left undecided rather than failed.
"""

from __future__ import annotations

import base64
import re
from contextvars import ContextVar
from typing import Any

from celpy import celtypes

#: CEL's reserved words, which Kubernetes escapes as `__word__` in property names.
_RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package "
    "namespace return var void while".split()
)
_ESCAPABLE = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}
_ESCAPE = re.compile("|".join(re.escape(k) for k in _ESCAPES))

#: What the API server appends to `generateName` (five of its random characters).
GENERATED_SUFFIX = "x7k2q"


def escape(name: str) -> str | None:
    """A property's name as a CEL field name, or None when CEL cannot name it."""
    if name in _RESERVED:
        return f"__{name}__"
    if not _ESCAPABLE.match(name):
        return None
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], name)


def object_meta(meta: Any) -> dict[str, Any]:
    """The part of `metadata` that rules see: name (generated if need be) and generateName."""
    if not isinstance(meta, dict):
        return {}
    shown = {k: meta[k] for k in ("name", "generateName") if isinstance(meta.get(k), str)}
    if "name" not in shown and "generateName" in shown:
        shown["name"] = shown["generateName"][:58] + GENERATED_SUFFIX
    return shown


#: Set while `has(x.f)` looks a field up: that reads no value.
PROBING: ContextVar[bool] = ContextVar("probing", default=False)


class Reads:
    """Whether the rule being evaluated has read a value known only at run time."""

    def __init__(self) -> None:
        self.runtime = False

    def note(self, value: Any) -> None:
        """Note a value that a rule reads."""
        if isinstance(value, RuntimeString) and not PROBING.get():
            self.runtime = True


class RuntimeString(celtypes.StringType):
    """A string that Argo replaces at run time: its value is unknown."""


class TrackedMap(celtypes.MapType):
    """A map that notes reads of run-time values."""

    reads: Reads

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        self.reads.note(value)
        return value


class TrackedList(celtypes.ListType):
    """A list that notes reads of run-time values."""

    reads: Reads

    def __getitem__(self, index: Any) -> Any:
        value = super().__getitem__(index)
        self.reads.note(value)
        return value

    def __iter__(self) -> Any:
        for value in super().__iter__():
            self.reads.note(value)
            yield value


def make_map(items: dict[Any, Any], reads: Reads | None) -> celtypes.MapType:
    """A CEL map; one that tracks run-time values when `reads` is given."""
    if reads is None:
        return celtypes.MapType(items)
    tracked = TrackedMap(items)
    tracked.reads = reads
    return tracked


def make_list(items: list[Any], reads: Reads | None) -> celtypes.ListType:
    """A CEL list; one that tracks run-time values when `reads` is given."""
    if reads is None:
        return celtypes.ListType(items)
    tracked = TrackedList(items)
    tracked.reads = reads
    return tracked


def scalar(value: Any, schema: dict[str, Any], runtime: bool) -> Any:
    """A JSON scalar as a CEL value of its schema's type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    kind = schema.get("type")
    if isinstance(value, int):
        return celtypes.DoubleType(value) if kind == "number" else celtypes.IntType(value)
    if isinstance(value, float):
        whole = kind == "integer" and value.is_integer()
        return celtypes.IntType(int(value)) if whole else celtypes.DoubleType(value)
    if isinstance(value, str):
        if runtime and "{{" in value:
            return RuntimeString(value)
        return _formatted(value, schema.get("format"))
    return celtypes.StringType(str(value))


def _formatted(value: str, fmt: Any) -> Any:
    try:
        if fmt == "duration":
            return celtypes.DurationType(value)
        if fmt in ("date-time", "date"):
            return celtypes.TimestampType(value)
        if fmt == "byte":
            return celtypes.BytesType(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        pass  # the schema's format check reports it; CEL sees the string
    return celtypes.StringType(value)

"""Kubernetes' CEL libraries, as functions for celpy.

The API server adds libraries to standard CEL for `x-kubernetes-validations` rules: cel-go's
string extensions, Kubernetes' lists, regex, URL, IP/CIDR and quantity libraries. celpy has
the standard functions only; these are the missing ones, written after the Kubernetes
documentation ("CEL in Kubernetes": kubernetes.io/docs/reference/using-api/cel/). celpy calls
a method `x.f(y)` and a function `f(x, y)` the same way, so one Python function serves both,
and it dispatches on the receiver's type where two libraries share a name (`indexOf`).
Not provided: what celpy cannot express, namespaced functions (`ip.isCanonical`, the `format`
and `sets` libraries), optional types and two-variable comprehensions; a rule that uses them is
reported as not evaluated (`cel_rules`).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError

Function = Callable[..., Any]


#: Function names as rules call them, filled in by `@_cel`.
FUNCTIONS: dict[str, Function] = {"dyn": lambda value: value}


def _cel(name: str) -> Callable[[Function], Function]:
    """Register a function under its CEL name.

    Errors in its arguments pass through; a bad argument is a CEL error that names it.
    """

    def register(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args: Any) -> Any:
            for arg in args:
                if isinstance(arg, CELEvalError):
                    return arg
            try:
                return function(*args)
            except (ValueError, IndexError, re2.error) as exc:
                return CELEvalError(f"{name}: {exc}", type(exc), None)

        FUNCTIONS[name] = wrapper
        return wrapper

    return register


def _list(values: Any) -> celtypes.ListType:
    return celtypes.ListType(values)


def _strings(values: Any) -> celtypes.ListType:
    return celtypes.ListType(celtypes.StringType(v) for v in values)


# Strings (cel-go ext.Strings).


@_cel("charAt")
def char_at(text: str, index: int) -> celtypes.StringType:
    """`s.charAt(i)`: the character at i, "" at the end."""
    if not 0 <= index <= len(text):
        raise IndexError(f"index out of range: {index}")
    return celtypes.StringType(text[index : index + 1])


@_cel("indexOf")
def index_of(receiver: Any, item: Any, start: int = 0) -> celtypes.IntType:
    """`s.indexOf(sub[, start])` and `list.indexOf(x)`: first index, or -1."""
    if isinstance(receiver, list):
        return celtypes.IntType(next((i for i, v in enumerate(receiver) if v == item), -1))
    if not 0 <= start <= len(receiver):
        raise IndexError(f"index out of range: {start}")
    return celtypes.IntType(receiver.find(item, start))


@_cel("lastIndexOf")
def last_index_of(receiver: Any, item: Any, end: int | None = None) -> celtypes.IntType:
    """`s.lastIndexOf(sub[, end])` and `list.lastIndexOf(x)`: last index, or -1."""
    if isinstance(receiver, list):
        found = [i for i, v in enumerate(receiver) if v == item]
        return celtypes.IntType(found[-1] if found else -1)
    if end is None:
        return celtypes.IntType(receiver.rfind(item))
    if not 0 <= end < max(len(receiver), 1):
        raise IndexError(f"index out of range: {end}")
    return celtypes.IntType(receiver.rfind(item, 0, end + len(item)))


@_cel("lowerAscii")
def lower_ascii(text: str) -> celtypes.StringType:
    """`s.lowerAscii()`: ASCII letters lowered, others kept."""
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in text))


@_cel("upperAscii")
def upper_ascii(text: str) -> celtypes.StringType:
    """`s.upperAscii()`: ASCII letters raised, others kept."""
    return celtypes.StringType("".join(c.upper() if c.isascii() else c for c in text))


@_cel("replace")
def replace(text: str, old: str, new: str, limit: int = -1) -> celtypes.StringType:
    """`s.replace(old, new[, n])`: every (or the first n) occurrences replaced."""
    return celtypes.StringType(text.replace(old, new, limit))


@_cel("split")
def split(text: str, separator: str, limit: int = -1) -> celtypes.ListType:
    """`s.split(sep[, n])`, as Go's strings.SplitN: n < 0 all parts, 0 none, else at most n."""
    if limit == 0:
        return _list([])
    if separator == "":
        chars = list(text)
        if 0 < limit < len(chars):
            chars = [*chars[: limit - 1], "".join(chars[limit - 1 :])]
        return _strings(chars)
    return _strings(text.split(separator, limit - 1 if limit > 0 else -1))


@_cel("substring")
def substring(text: str, start: int, end: int | None = None) -> celtypes.StringType:
    """`s.substring(start[, end])`, by code point."""
    end = len(text) if end is None else end
    if not 0 <= start <= end <= len(text):
        raise IndexError(f"index out of range: [{start}:{end}]")
    return celtypes.StringType(text[start:end])


@_cel("trim")
def trim(text: str) -> celtypes.StringType:
    """`s.trim()`: leading and trailing whitespace removed."""
    return celtypes.StringType(text.strip())


@_cel("join")
def join(items: list[Any], separator: str = "") -> celtypes.StringType:
    """`list.join([sep])` of a list of strings."""
    if not all(isinstance(i, str) for i in items):
        raise ValueError("join needs a list of strings")
    return celtypes.StringType(separator.join(items))


@_cel("reverse")
def reverse(receiver: Any) -> Any:
    """`s.reverse()` and `list.reverse()`."""
    if isinstance(receiver, list):
        return _list(reversed(receiver))
    return celtypes.StringType(receiver[::-1])


# Lists (Kubernetes' lists library; `min()` is built into celpy).


@_cel("isSorted")
def is_sorted(items: list[Any]) -> celtypes.BoolType:
    """`list.isSorted()`."""
    return celtypes.BoolType(all(a <= b for a, b in zip(items, items[1:], strict=False)))


@_cel("sum")
def sum_of(items: list[Any]) -> Any:
    """`list.sum()`: 0 for an empty list."""
    return functools.reduce(lambda a, b: a + b, items) if items else celtypes.IntType(0)


@_cel("max")
def max_of(items: list[Any]) -> Any:
    """`list.max()`: an error for an empty list."""
    if not items:
        raise ValueError("max of an empty list")
    return max(items)


# Regex (Kubernetes' regex library; `matches` is standard CEL).


@_cel("find")
def find(text: str, pattern: str) -> celtypes.StringType:
    """`s.find(re)`: the first match, or ""."""
    match = re2.search(pattern, text)
    return celtypes.StringType(match.group(0) if match else "")


@_cel("findAll")
def find_all(text: str, pattern: str, limit: int = -1) -> celtypes.ListType:
    """`s.findAll(re[, n])`: every (or the first n) matches."""
    found = [m.group(0) for m in re2.finditer(pattern, text)]
    return _strings(found if limit < 0 else found[:limit])


# URLs (Kubernetes' URL library).


class URL:
    """A parsed `url(s)`: an absolute URI or an absolute path, as Go's url.ParseRequestURI."""

    def __init__(self, text: str) -> None:
        if not text.startswith("/") and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text):
            raise ValueError(f"not an absolute URI or path: {text!r}")
        if any(c.isspace() or ord(c) < 0x20 for c in text):
            raise ValueError(f"invalid character in URL: {text!r}")
        self.text = text
        self.parts: SplitResult = urlsplit(text)

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


@_cel("url")
def url(text: str) -> URL:
    """`url(s)`."""
    return URL(text)


@_cel("isURL")
def is_url(text: str) -> celtypes.BoolType:
    """`isURL(s)`."""
    try:
        URL(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


@_cel("getScheme")
def get_scheme(value: URL) -> celtypes.StringType:
    """`url.getScheme()`."""
    return celtypes.StringType(value.parts.scheme)


@_cel("getHost")
def get_host(value: URL) -> celtypes.StringType:
    """`url.getHost()`: host and port, IPv6 in brackets."""
    return celtypes.StringType(value.parts.netloc.rpartition("@")[2])


@_cel("getHostname")
def get_hostname(value: URL) -> celtypes.StringType:
    """`url.getHostname()`: the host without port or brackets."""
    host = value.parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return celtypes.StringType(host[1 : host.index("]")])
    return celtypes.StringType(host.partition(":")[0])


@_cel("getPort")
def get_port(value: URL) -> celtypes.StringType:
    """`url.getPort()`: the port as written, or ""."""
    host = value.parts.netloc.rpartition("@")[2]
    tail = host[host.index("]") + 1 :] if host.startswith("[") else host
    return celtypes.StringType(tail.partition(":")[2])


@_cel("getEscapedPath")
def get_escaped_path(value: URL) -> celtypes.StringType:
    """`url.getEscapedPath()`."""
    return celtypes.StringType(value.parts.path)


@_cel("getQuery")
def get_query(value: URL) -> celtypes.MapType:
    """`url.getQuery()`: a map of lists of values."""
    query = parse_qs(value.parts.query, keep_blank_values=True)
    return celtypes.MapType({celtypes.StringType(k): _strings(v) for k, v in query.items()})


# IP addresses and CIDRs (Kubernetes' IP and CIDR libraries).


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(str(text))
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped or address.scope_id):
        raise ValueError(f"IPv4-mapped IPv6 addresses and zones are not allowed: {text!r}")
    return address


class IP:
    """An `ip(s)` value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.address = _parse_ip(text)

    def __str__(self) -> str:
        return str(self.address)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)


class CIDR:
    """A `cidr(s)` value: an address and a prefix length."""

    def __init__(self, text: str) -> None:
        address, slash, length = text.partition("/")
        if not slash or not length.isdigit():
            raise ValueError(f"not a CIDR: {text!r}")
        self.ip = IP(address)
        self.interface = ipaddress.ip_interface(f"{self.ip.address}/{int(length)}")

    def __str__(self) -> str:
        return str(self.interface)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CIDR) and other.interface == self.interface

    def __hash__(self) -> int:
        return hash(self.interface)


@_cel("ip")
def ip(value: Any) -> IP:
    """`ip(s)`, and `cidr.ip()`: the address of a CIDR."""
    return value.ip if isinstance(value, CIDR) else IP(value)


@_cel("isIP")
def is_ip(text: str) -> celtypes.BoolType:
    """`isIP(s)`."""
    try:
        IP(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


@_cel("cidr")
def cidr(text: str) -> CIDR:
    """`cidr(s)`."""
    return CIDR(text)


@_cel("isCIDR")
def is_cidr(text: str) -> celtypes.BoolType:
    """`isCIDR(s)`."""
    try:
        CIDR(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


@_cel("family")
def family(value: IP) -> celtypes.IntType:
    """`ip.family()`: 4 or 6."""
    return celtypes.IntType(value.address.version)


def _ip_test(name: str, test: Callable[[Any], bool]) -> None:
    def check(value: IP) -> celtypes.BoolType:
        return celtypes.BoolType(test(value.address))

    _cel(name)(check)


@_cel("containsIP")
def contains_ip(value: CIDR, other: Any) -> celtypes.BoolType:
    """`cidr.containsIP(ip or string)`."""
    address = other.address if isinstance(other, IP) else IP(other).address
    return celtypes.BoolType(address in value.interface.network)


@_cel("containsCIDR")
def contains_cidr(value: CIDR, other: Any) -> celtypes.BoolType:
    """`cidr.containsCIDR(cidr or string)`."""
    network = (other if isinstance(other, CIDR) else CIDR(other)).interface.network
    return celtypes.BoolType(
        network.version == value.interface.network.version
        and network.subnet_of(value.interface.network)  # type: ignore[arg-type]
    )


@_cel("prefixLength")
def prefix_length(value: CIDR) -> celtypes.IntType:
    """`cidr.prefixLength()`."""
    return celtypes.IntType(value.interface.network.prefixlen)


@_cel("masked")
def masked(value: CIDR) -> CIDR:
    """`cidr.masked()`: the CIDR with the host bits cleared."""
    return CIDR(str(value.interface.network))


# Quantities (Kubernetes' quantity library).

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?[0-9]+))?$"
)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
}
_INT64 = (-(2**63), 2**63 - 1)


class Quantity:
    """A `quantity(s)` value, compared by amount: quantity('1') == quantity('1000m')."""

    def __init__(self, text: str, value: Decimal | None = None) -> None:
        self.text = text
        if value is None:
            match = _QUANTITY.match(text)
            if not match:
                raise ValueError(f"not a quantity: {text!r}")
            number, suffix, exponent = match.groups()
            try:
                value = Decimal(number)
            except InvalidOperation as exc:  # pragma: no cover - the pattern rules it out
                raise ValueError(f"not a quantity: {text!r}") from exc
            if suffix:
                value *= _SUFFIXES[suffix]
            elif exponent:
                value = value.scaleb(int(exponent))
        self.value = value

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def _amount(value: Any) -> Decimal:
    if isinstance(value, Quantity):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise ValueError(f"not a quantity or an integer: {value!r}")


@_cel("quantity")
def quantity(text: str) -> Quantity:
    """`quantity(s)`."""
    return Quantity(text)


@_cel("isQuantity")
def is_quantity(text: str) -> celtypes.BoolType:
    """`isQuantity(s)`."""
    return celtypes.BoolType(bool(_QUANTITY.match(text)))


@_cel("sign")
def sign(value: Quantity) -> celtypes.IntType:
    """`q.sign()`: -1, 0 or 1."""
    return celtypes.IntType((value.value > 0) - (value.value < 0))


@_cel("isInteger")
def is_integer(value: Quantity) -> celtypes.BoolType:
    """`q.isInteger()`: whole and within int64."""
    whole = value.value == value.value.to_integral_value()
    return celtypes.BoolType(whole and _INT64[0] <= value.value <= _INT64[1])


@_cel("asInteger")
def as_integer(value: Quantity) -> celtypes.IntType:
    """`q.asInteger()`: an error unless `isInteger()`."""
    if not is_integer(value):
        raise ValueError(f"{value} is not an int64 integer")
    return celtypes.IntType(int(value.value))


@_cel("asApproximateFloat")
def as_approximate_float(value: Quantity) -> celtypes.DoubleType:
    """`q.asApproximateFloat()`."""
    return celtypes.DoubleType(float(value.value))


@_cel("add")
def add(value: Quantity, other: Any) -> Quantity:
    """`q.add(quantity or int)`."""
    total = value.value + _amount(other)
    return Quantity(str(total), total)


@_cel("sub")
def sub(value: Quantity, other: Any) -> Quantity:
    """`q.sub(quantity or int)`."""
    total = value.value - _amount(other)
    return Quantity(str(total), total)


@_cel("compareTo")
def compare_to(value: Quantity, other: Quantity) -> celtypes.IntType:
    """`q.compareTo(q2)`: -1, 0 or 1."""
    return celtypes.IntType((value.value > other.value) - (value.value < other.value))


@_cel("isGreaterThan")
def is_greater_than(value: Quantity, other: Quantity) -> celtypes.BoolType:
    """`q.isGreaterThan(q2)`."""
    return celtypes.BoolType(value.value > other.value)


@_cel("isLessThan")
def is_less_than(value: Quantity, other: Quantity) -> celtypes.BoolType:
    """`q.isLessThan(q2)`."""
    return celtypes.BoolType(value.value < other.value)


_ip_test("isUnspecified", lambda a: a.is_unspecified)
_ip_test("isLoopback", lambda a: a.is_loopback)
_ip_test(
    "isLinkLocalMulticast",
    lambda a: a in ipaddress.ip_network("224.0.0.0/24" if a.version == 4 else "ff02::/16"),
)
_ip_test("isLinkLocalUnicast", lambda a: a.is_link_local and not a.is_multicast)
_ip_test(
    "isGlobalUnicast",
    lambda a: (
        not (
            a.is_unspecified
            or a.is_loopback
            or a.is_multicast
            or a.is_link_local
            or a == ipaddress.IPv4Address("255.255.255.255")
        )
    ),
)

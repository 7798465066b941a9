"""The `sprig` map of Argo's env: Masterminds/sprig v3.3 `GenericFuncMap`, less env and expandenv.

Every sprig name is in `SPRIG`; the ones without an implementation here raise an unsupported
error when called.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import operator
import re
import zlib
from collections.abc import Callable
from typing import Any

from workflows.local.expr._builtins import builtin_float, builtin_int, repeat
from workflows.local.expr._values import (
    GO_SPACE,
    INT64_MAX,
    INT64_MIN,
    Failure,
    Func,
    deep_equal,
    go_json,
    go_json_decode,
    go_regex,
    go_split,
    go_sprint,
    go_type,
    int_arg,
    is_number,
    list_arg,
    map_arg,
    regex_search,
    str_arg,
    unsupported,
    wrap_int,
)

_SPRIG_NAMES = """
hello ago date date_in_zone date_modify dateInZone dateModify duration durationRound htmlDate
htmlDateInZone must_date_modify mustDateModify mustToDate now toDate unixEpoch abbrev
abbrevboth trunc trim upper lower title untitle substr repeat trimall trimAll trimSuffix
trimPrefix nospace initials randAlphaNum randAlpha randAscii randNumeric swapcase shuffle
snakecase camelcase kebabcase wrap wrapWith contains hasPrefix hasSuffix quote squote cat
indent nindent replace plural sha1sum sha256sum sha512sum adler32sum toString atoi int64 int
float64 seq toDecimal split splitList splitn toStrings until untilStep add1 add sub div mod mul
randInt add1f addf subf divf mulf biggest max min maxf minf ceil floor round join sortAlpha
default empty coalesce all any compact mustCompact fromJson toJson toPrettyJson toRawJson
mustFromJson mustToJson mustToPrettyJson mustToRawJson ternary deepCopy mustDeepCopy typeOf
typeIs typeIsLike kindOf kindIs deepEqual getHostByName base dir clean ext isAbs osBase osClean
osDir osExt osIsAbs b64enc b64dec b32enc b32dec tuple list dict get set unset hasKey pluck keys
pick omit merge mergeOverwrite mustMerge mustMergeOverwrite values append push mustAppend
mustPush prepend mustPrepend first mustFirst rest mustRest last mustLast initial mustInitial
reverse mustReverse uniq mustUniq without mustWithout has mustHas slice mustSlice concat dig
chunk mustChunk bcrypt htpasswd genPrivateKey derivePassword buildCustomCert genCA genCAWithKey
genSelfSignedCert genSelfSignedCertWithKey genSignedCert genSignedCertWithKey encryptAES
decryptAES randBytes uuidv4 semver semverCompare fail regexMatch mustRegexMatch regexFindAll
mustRegexFindAll regexFind mustRegexFind regexReplaceAll mustRegexReplaceAll
regexReplaceAllLiteral mustRegexReplaceAllLiteral regexSplit mustRegexSplit regexQuoteMeta
urlParse urlJoin
""".split()


def _cast_int(value: Any) -> int:
    """spf13/cast `ToInt64`: bools are 0/1, strings parse with Go's base prefixes; else 0."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and abs(value) < 2**63 else 0
    if not isinstance(value, str):
        return 0
    whole = re.fullmatch(r"([-+]?\d*)\.\d*", value)  # cast drops a decimal part: "3.7" is 3
    text = (whole.group(1) + "0" if whole.group(1) in "-+" else whole.group(1)) if whole else value
    parsed = re.fullmatch(r"([+-]?)(?:0([xXoObB])([\w]+)|(0[0-7_]*)|([1-9][\d_]*))", text)
    if not parsed:
        return 0
    sign, prefix, prefixed, octal, decimal = parsed.groups()
    base = {"x": 16, "o": 8, "b": 2}[prefix.lower()] if prefix else 8 if octal else 10
    try:
        number = int(sign + (prefixed or octal or decimal).strip("_"), base)
    except ValueError:
        return 0
    return number if INT64_MIN <= number <= INT64_MAX else 0


def _cast_float(value: Any) -> float:
    """spf13/cast `ToFloat64`: bools are 0/1, strings parse as Go floats; else 0."""
    if isinstance(value, bool | int | float):
        return float(value)
    try:
        return builtin_float(value) if isinstance(value, str) else 0.0
    except Failure:
        return 0.0


def _strval(value: Any) -> str:
    return value if isinstance(value, str) else go_sprint(value)


def _strslice(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_strval(v) for v in value if v is not None]
    return [] if value is None else [_strval(value)]


def _empty(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return not value
    if isinstance(value, str | list | dict):
        return len(value) == 0
    return is_number(value) and value == 0


def _go_quote(text: str) -> str:
    """Go's `strconv.Quote`."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
    escapes |= {"\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for char in text:
        code = ord(char)
        if char in escapes or char.isprintable():
            out.append(escapes.get(char, char))
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _title(text: Any) -> str:
    """Go's `strings.Title`: upper-case each letter that follows a separator."""
    out, previous = [], " "
    for char in str_arg(text, "title"):
        if previous.isascii():
            after_separator = not (previous.isalnum() or previous == "_")
        else:
            after_separator = previous in GO_SPACE
        out.append(char.upper() if after_separator else char)
        previous = char
    return "".join(out)


def _go_divide(a: Any, b: Any, *, remainder: bool = False) -> int:
    x, y = _cast_int(a), _cast_int(b)
    if y == 0:
        raise Failure("runtime error: integer divide by zero")
    quotient = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
    return wrap_int(x - y * quotient if remainder else quotient)


def _substr(start: Any, end: Any, text: Any) -> str:
    a, b, data = int_arg(start, "substr"), int_arg(end, "substr"), str_arg(text, "substr").encode()
    if a < 0:
        a = 0
    elif b < 0 or b > len(data):
        b = len(data)
    if not 0 <= a <= b <= len(data):
        raise Failure(f"runtime error: slice bounds out of range [{a}:{b}]")
    return data[a:b].decode("utf-8", "replace")


def _trunc(count: Any, text: Any) -> str:
    c, data = int_arg(count, "trunc"), str_arg(text, "trunc").encode()
    if c < 0 and len(data) + c > 0:
        data = data[len(data) + c :]
    elif 0 <= c < len(data):
        data = data[:c]
    return data.decode("utf-8", "replace")


def _regex_match(pattern: Any, text: Any) -> bool:
    try:
        return regex_search(pattern, text)
    except Failure:
        return False


def _regex_replace(pattern: Any, text: Any, template: Any) -> str:
    """Go's `ReplaceAllString`: `$1`, `${1}`, `$name`, `${name}` expand; `$$` is a dollar."""
    template = str_arg(template, "regexReplaceAll")

    def expand(match: re.Match[str]) -> str:
        def one(ref: re.Match[str]) -> str:
            name = ref.group(1) or ref.group(2)
            if name is None:
                return "$"
            try:
                return match.group(int(name) if name.isdigit() else name) or ""
            except IndexError:
                return ""

        return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, template)

    return go_regex(pattern).sub(expand, str_arg(text, "regexReplaceAll"))


def _b64dec(text: Any) -> str:
    try:
        return base64.b64decode(str_arg(text, "b64dec"), validate=True).decode("utf-8", "replace")
    except binascii.Error as exc:
        return f"illegal base64 data: {exc}"  # sprig returns the error text


def _ternary(yes: Any, no: Any, test: Any) -> Any:
    if not isinstance(test, bool):
        raise Failure(f"ternary: the condition is a {go_type(test)}, not a bool")
    return yes if test else no


def _quiet(rule: Func, fallback: Any) -> Func:
    def run(*args: Any) -> Any:
        try:
            return rule(*args)
        except Failure:
            return fallback

    return run


def _sprig_dict(*pairs: Any) -> dict[str, Any]:
    padded = [*pairs, ""] if len(pairs) % 2 else list(pairs)
    return {_strval(k): v for k, v in zip(padded[::2], padded[1::2], strict=True)}


def _sprig_missing(name: str) -> Func:
    def run(*_: Any) -> Any:
        raise unsupported(f"sprig.{name}()")

    return run


def _ints(rule: Callable[..., int]) -> Func:
    return lambda *values: wrap_int(rule(*map(_cast_int, values)))


_SPRIG: dict[str, Func] = {
    "trim": lambda s: str_arg(s, "trim").strip(GO_SPACE),
    "trimAll": lambda cut, s: str_arg(s, "trimAll").strip(str_arg(cut)),
    "trimPrefix": lambda p, s: str_arg(s, "trimPrefix").removeprefix(str_arg(p)),
    "trimSuffix": lambda p, s: str_arg(s, "trimSuffix").removesuffix(str_arg(p)),
    "upper": lambda s: str_arg(s, "upper").upper(),
    "lower": lambda s: str_arg(s, "lower").lower(),
    "title": _title,
    "nospace": lambda s: "".join(c for c in str_arg(s, "nospace") if c not in GO_SPACE),
    "repeat": lambda n, s: repeat(s, n),
    "substr": _substr,
    "trunc": _trunc,
    "replace": lambda old, new, s: str_arg(s, "replace").replace(str_arg(old), str_arg(new)),
    "contains": lambda sub, s: str_arg(sub, "contains") in str_arg(s, "contains"),
    "hasPrefix": lambda p, s: str_arg(s, "hasPrefix").startswith(str_arg(p)),
    "hasSuffix": lambda p, s: str_arg(s, "hasSuffix").endswith(str_arg(p)),
    "quote": lambda *vs: " ".join(_go_quote(_strval(v)) for v in vs if v is not None),
    "squote": lambda *vs: " ".join(f"'{go_sprint(v)}'" for v in vs if v is not None),
    "toString": _strval,
    "atoi": lambda s: _quiet(builtin_int, 0)(str_arg(s, "atoi")),
    "int": _cast_int,
    "int64": _cast_int,
    "float64": _cast_float,
    "add": _ints(lambda *vs: sum(vs)),
    "add1": _ints(lambda v: v + 1),
    "sub": _ints(operator.sub),
    "mul": _ints(lambda *vs: math.prod(vs)),
    "div": _go_divide,
    "mod": lambda a, b: _go_divide(a, b, remainder=True),
    "max": _ints(lambda *vs: max(vs)),
    "min": _ints(lambda *vs: min(vs)),
    "split": lambda sep, s: {
        f"_{i}": p for i, p in enumerate(go_split(str_arg(s), str_arg(sep), -1))
    },
    "splitList": lambda sep, s: go_split(str_arg(s, "splitList"), str_arg(sep, "splitList"), -1),
    "join": lambda sep, items: str_arg(sep, "join").join(_strslice(items)),
    "default": lambda fallback, *given: given[0] if given and not _empty(given[0]) else fallback,
    "empty": _empty,
    "coalesce": lambda *vs: next((v for v in vs if not _empty(v)), None),
    "ternary": _ternary,
    "toJson": _quiet(go_json, ""),
    "mustToJson": go_json,
    "toPrettyJson": _quiet(lambda v: go_json(v, "  "), ""),
    "toRawJson": lambda v: go_json(v, escape_html=False),
    "fromJson": _quiet(lambda s: go_json_decode(str_arg(s, "fromJson")), None),
    "mustFromJson": lambda s: go_json_decode(str_arg(s, "mustFromJson")),
    "b64enc": lambda s: base64.b64encode(str_arg(s, "b64enc").encode()).decode(),
    "b64dec": _b64dec,
    "sha1sum": lambda s: hashlib.sha1(str_arg(s, "sha1sum").encode()).hexdigest(),
    "sha256sum": lambda s: hashlib.sha256(str_arg(s, "sha256sum").encode()).hexdigest(),
    "adler32sum": lambda s: str(zlib.adler32(str_arg(s, "adler32sum").encode())),
    "list": lambda *vs: list(vs),
    "dict": _sprig_dict,
    "get": lambda m, key: map_arg(m, "get").get(str_arg(key, "get"), ""),
    "hasKey": lambda m, key: str_arg(key, "hasKey") in map_arg(m, "hasKey"),
    "keys": lambda *ms: [k for m in ms for k in map_arg(m, "keys")],
    "values": lambda m: list(map_arg(m, "values").values()),
    "first": lambda items: next(iter(list_arg(items, "first")), None),
    "last": lambda items: next(reversed(list_arg(items, "last")), None),
    "has": lambda needle, items: any(deep_equal(needle, v) for v in list_arg(items or [], "has")),
    "regexMatch": _regex_match,
    "mustRegexMatch": regex_search,
    "regexFind": lambda rx, s: next((m.group(0) for m in go_regex(rx).finditer(str_arg(s))), ""),
    "regexReplaceAll": _regex_replace,
    "regexReplaceAllLiteral": lambda rx, s, new: go_regex(rx).sub(
        lambda _: str_arg(new), str_arg(s)
    ),
}
SPRIG: dict[str, Func] = {name: _SPRIG.get(name) or _sprig_missing(name) for name in _SPRIG_NAMES}
"""Every sprig name Argo offers; the ones not implemented here raise an unsupported error."""

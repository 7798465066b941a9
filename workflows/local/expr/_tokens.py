"""The tokenizer of expr: numbers, strings with expr's escapes, names, operators, brackets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workflows.local.expr._values import Failure, unsupported


@dataclass(frozen=True)
class Token:
    """A token: its kind, its text as written, its value (a literal's, else the text), where."""

    kind: str  # int, float, str, ident, op, bracket, eof
    text: str
    value: Any
    pos: int


_KEYWORDS = {"not", "in", "or", "and", "matches", "contains", "startsWith", "endsWith"}
_KEYWORDS |= {"let", "if", "else"}
IDENT = re.compile(r"(?:[^\W\d]|\$)[\w$]*")
_NUMBER = re.compile(
    r"0[xX][\da-fA-F_]*|0[oO][0-7_]*|0[bB][01_]*"
    r"|(?:\d[\d_]*(?:\.(?!\.)[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?[\d_]*)?"
)
_OPERATORS = ("??", "?.", "||", "::", "..", "&&", "==", "!=", "<=", ">=", "**")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an `eof` token; comments and spaces are dropped."""
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        char = text[at]
        if char.isspace():
            at += 1
        elif text.startswith("//", at):
            end = text.find("\n", at)
            at = len(text) if end < 0 else end
        elif text.startswith("/*", at):
            end = text.find("*/", at + 2)
            if end < 0:
                raise Failure(f"syntax error: unclosed comment at column {at + 1}")
            at = end + 2
        elif char in "'\"`":
            value, end = _scan_raw(text, at) if char == "`" else _scan_string(text, at)
            tokens.append(Token("str", text[at:end], value, at))
            at = end
        elif char in "bB" and text[at + 1 : at + 2] in ("'", '"'):
            raise unsupported(f"the bytes literal at column {at + 1}")
        elif number := _NUMBER.match(text, at):
            tokens.append(_number(number.group(), at))
            at = number.end()
            if at < len(text) and (text[at].isalnum() or text[at] in "_$"):
                raise Failure(f"syntax error: bad number syntax at column {tokens[-1].pos + 1}")
        elif ident := IDENT.match(text, at):
            word = ident.group()
            tokens.append(Token("op" if word in _KEYWORDS else "ident", word, word, at))
            at = ident.end()
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, at)), char)
            if op not in _OPERATORS and op not in "()[]{}?|:,;%+-^/*<>!=&#.":
                raise Failure(f"syntax error: unrecognized character {char!r} at column {at + 1}")
            tokens.append(Token("bracket" if op in "()[]{}" else "op", op, op, at))
            at += len(op)
            if op == "#" and (name := re.compile(r"[\w$]+").match(text, at)):
                tokens.append(Token("ident", name.group(), name.group(), at))
                at = name.end()
    tokens.append(Token("eof", "", None, len(text)))
    return tokens


def _number(text: str, pos: int) -> Token:
    digits = text.replace("_", "")
    try:
        if digits[:2].lower() in ("0x", "0o", "0b"):
            value: int | float = int(digits, 0)
        elif "." in digits or "e" in digits.lower():
            value = float(digits)
            if value == float("inf"):
                raise ValueError("float literal is too large")
        else:
            value = int(digits, 10)
    except ValueError:
        raise Failure(f"syntax error: invalid number {text!r} at column {pos + 1}") from None
    if isinstance(value, int) and value > 2**63 - 1:
        raise Failure(f"syntax error: integer literal {text} is too large")
    return Token("float" if isinstance(value, float) else "int", text, value, pos)


def _scan_string(text: str, start: int) -> tuple[str, int]:
    r"""A quoted string with expr's escapes: `\n`, `\xFF`, `\101`, `\u00e9`, `\u{1F600}`."""
    quote, at, out = text[start], start + 1, bytearray()
    while True:
        if at >= len(text) or text[at] == "\n":
            raise Failure(f"syntax error: literal not terminated at column {start + 1}")
        char = text[at]
        if char == quote:
            return out.decode("utf-8", "replace"), at + 1
        if char != "\\":
            out += ("\n" if char == "\r" else char).encode("utf-8", "surrogatepass")
            at += 1
            continue
        code = text[at + 1 : at + 2]
        if code in _ESCAPES or code in ("\\", quote):
            out += _ESCAPES.get(code, code).encode()
            at += 2
        elif escape := re.compile(r"x[\da-fA-F]{2}|[0-3][0-7]{2}").match(text, at + 1):
            out.append(int(escape.group()[1:], 16) if code == "x" else int(escape.group(), 8))
            at = escape.end()
        elif escape := re.compile(
            r"u\{([\da-fA-F]{1,6})\}|u([\da-fA-F]{4})|U([\da-fA-F]{8})"
        ).match(text, at + 1):
            point = int(next(g for g in escape.groups() if g), 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                raise Failure(f"syntax error: invalid unicode code point at column {at + 1}")
            out += chr(point).encode()
            at = escape.end()
        else:
            raise Failure(f"syntax error: invalid char escape at column {at + 1}")


def _scan_raw(text: str, start: int) -> tuple[str, int]:
    """A backtick string: no escapes; a doubled backtick stands for one."""
    at, parts = start + 1, []
    while (end := text.find("`", at)) >= 0:
        parts.append(text[at:end])
        if not text.startswith("``", end):
            return "`".join(parts), end + 1
        at = end + 2
    raise Failure(f"syntax error: literal not terminated at column {start + 1}")

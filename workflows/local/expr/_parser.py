"""Expr's parser (parser/parser.go): precedence climbing over its operator table to a tree."""

from __future__ import annotations

from workflows.local.expr._builtins import BUILTINS
from workflows.local.expr._tokens import IDENT, Token, tokenize
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
    Pair,
    Pointer,
    Predicate,
    Slice,
    Unary,
)
from workflows.local.expr._values import Failure, unsupported

_BINARY = {"|": 0, "or": 10, "||": 10, "and": 15, "&&": 15, "..": 25, "+": 30, "-": 30}
_BINARY |= dict.fromkeys(("==", "!=", "<", ">", ">=", "<=", "in", "matches"), 20)
_BINARY |= {"contains": 20, "startsWith": 20, "endsWith": 20, "*": 60, "/": 60, "%": 60}
_BINARY |= {"**": 100, "^": 100, "??": 500}
_RIGHT_ASSOCIATIVE = {"**", "^"}
_UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}
_NEGATABLE = {"in", "matches", "contains", "startsWith", "endsWith"}
_COMPARISONS = ("<", ">", "<=", ">=")
_NOT_IMPLEMENTED = {"groupBy", "sortBy", "reduce", "now", "duration", "date", "timezone", "take"}
_NOT_IMPLEMENTED |= {"toPairs", "fromPairs", "mean", "median", "bitand", "bitor", "bitxor"}
_NOT_IMPLEMENTED |= {"bitnand", "bitnot", "bitshl", "bitshr", "bitushr"}


class Parser:
    """expr's parser (parser/parser.go), precedence climbing over its operator table."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.depth = 0  # inside a predicate, where `#` and `.name` mean the element

    def parse(self) -> Node:
        node = self._expression(0)
        if self._is("op", ";"):
            raise unsupported("`;` (a sequence of expressions)")
        if not self._is("eof"):
            raise self._unexpected()
        return node

    @property
    def _cur(self) -> Token:
        return self.tokens[self.at]

    def _is(self, kind: str, *values: str) -> bool:
        return self._cur.kind == kind and (not values or self._cur.value in values)

    def _next(self) -> Token:
        token = self._cur
        self.at += token.kind != "eof"
        return token

    def _expect(self, kind: str, value: str) -> None:
        if not self._is(kind, value):
            raise self._unexpected(f"expected {value!r}")
        self._next()

    def _unexpected(self, hint: str = "", token: Token | None = None) -> Failure:
        token = token or self._cur
        what = "end of expression" if token.kind == "eof" else f"token {token.text!r}"
        where = f"at column {token.pos + 1}" + (f" ({hint})" if hint else "")
        return Failure(f"syntax error: unexpected {what} {where}")

    def _expression(self, precedence: int) -> Node:
        if precedence == 0 and self._is("op", "let", "if"):
            raise unsupported(f"`{self._cur.value}`")
        left = self._primary()
        previous = ""
        while self._is("op"):
            token, negate = self._cur, self._cur.value == "not"
            if negate:
                token = self.tokens[self.at + 1]
                if token.kind != "op" or token.value not in _NEGATABLE:
                    raise self._unexpected(token=token)
                if _BINARY[token.value] < precedence:
                    break
                self._next()
            op = token.value
            if op not in _BINARY or _BINARY[op] < precedence:
                break
            self._next()
            if op == "|":
                if not self._is("ident"):
                    raise self._unexpected("a pipe is followed by a function call")
                left = self._call(self._next().value, [left])
            elif previous == "??" and op != "??":
                raise Failure(
                    f"syntax error: operator ({op}) and coalesce expressions (??) cannot be"
                    " mixed; wrap either in parentheses"
                )
            elif op in _COMPARISONS:
                left = self._comparison(left, op)
            else:
                right = self._expression(_BINARY[op] + (op not in _RIGHT_ASSOCIATIVE))
                left = Binary(op, left, right)
                left = Unary("not", left) if negate else left
            previous = op
        return self._conditional(left) if precedence == 0 else left

    def _comparison(self, left: Node, op: str) -> Node:
        """`a < b <= c` is `a < b && b <= c`, as in expr."""
        right = self._expression(_BINARY[op] + 1)
        node: Node = Binary(op, left, right)
        while self._is("op", *_COMPARISONS):
            op = self._next().value
            following = self._expression(_BINARY[op] + 1)
            node, right = Binary("&&", node, Binary(op, right, following)), following
        return node

    def _conditional(self, node: Node) -> Node:
        while self._is("op", "?"):
            self._next()
            if self._is("op", ":"):  # `a ?: b`
                self._next()
                node = Cond(node, node, self._expression(0))
                continue
            yes = self._expression(0)
            self._expect("op", ":")
            node = Cond(node, yes, self._expression(0))
        return node

    def _primary(self) -> Node:
        token = self._cur
        if token.kind == "op" and token.value in _UNARY:
            self._next()
            return self._postfix(Unary(token.value, self._expression(_UNARY[token.value])))
        if self._is("bracket", "("):
            self._next()
            node = self._expression(0)
            self._expect("bracket", ")")
            return self._postfix(node)
        if self.depth > 0 and self._is("op", "#", "."):  # `.name` is `#.name` in a predicate
            name = ""
            if token.value == "#":
                self._next()
                name = self._next().value if self._is("ident") else ""
            if name not in ("", "index"):
                raise unsupported(f"the pointer #{name}")
            return self._postfix(Pointer(name))
        if self._is("op", "::"):
            raise unsupported("`::`")
        return self._secondary()

    def _secondary(self) -> Node:
        token = self._next()
        if token.kind == "ident":
            if token.value in ("true", "false", "nil"):
                return Lit({"true": True, "false": False, "nil": None}[token.value])
            node = self._call(token.value, []) if self._is("bracket", "(") else Ident(token.value)
        elif token.kind in ("int", "float"):
            return Lit(token.value)
        elif token.kind == "str":
            node = Lit(token.value)
        elif token.kind == "bracket" and token.value == "[":
            node = Array(tuple(self._items("]")))
        elif token.kind == "bracket" and token.value == "{":
            node = self._map()
        else:
            raise self._unexpected(token=token)
        return self._postfix(node)

    def _call(self, name: str, args: list[Node]) -> Node:
        if name in _NOT_IMPLEMENTED:
            raise unsupported(f"the builtin {name}()")
        if name not in PREDICATES:
            self._expect("bracket", "(")
            args += self._items(")")
            return (
                Builtin(name, tuple(args)) if name in BUILTINS else Call(Ident(name), tuple(args))
            )
        self._expect("bracket", "(")
        piped = bool(args)
        if not piped:
            args.append(self._expression(0))
        if not (PREDICATES[name] and self._is("bracket", ")")):
            if not piped:
                self._expect("op", ",")
            args.append(self._predicate())
        if self._is("op", ","):
            self._next()
        self._expect("bracket", ")")
        return Builtin(name, tuple(args))

    def _predicate(self) -> Node:
        braces = self._is("bracket", "{")
        if braces:
            self._next()
        self.depth += 1
        node = self._expression(0)
        self.depth -= 1
        if self._is("op", ";"):
            raise unsupported("`;` (a sequence of expressions)")
        if braces:
            self._expect("bracket", "}")
        return Predicate(node)

    def _items(self, close: str) -> list[Node]:
        """Comma-separated expressions up to `close`, a trailing comma allowed."""
        items: list[Node] = []
        while not self._is("bracket", close):
            if items:
                self._expect("op", ",")
                if self._is("bracket", close):
                    break
            items.append(self._expression(0))
        self._next()
        return items

    def _map(self) -> MapLit:
        pairs: list[Pair] = []
        while not self._is("bracket", "}"):
            if pairs:
                self._expect("op", ",")
                if self._is("bracket", "}"):
                    break
            token = self._cur
            if token.kind in ("int", "float", "str", "ident"):
                key: Node = Lit(token.value if token.kind == "str" else token.text)
                self._next()
            elif self._is("bracket", "("):
                key = self._expression(0)
            else:
                raise self._unexpected("a map key is a name, a string, a number or (expression)")
            self._expect("op", ":")
            pairs.append(Pair(key, self._expression(0)))
        self._next()
        return MapLit(tuple(pairs))

    def _postfix(self, node: Node) -> Node:
        while True:
            if self._is("bracket", "["):
                self._next()
                node = self._subscript(node, optional=False)
            elif self._is("op", ".", "?."):
                optional = self._next().value == "?."
                if optional and self._is("bracket", "["):
                    self._next()
                    node = self._subscript(node, optional=True)
                    continue
                prop = self._next()
                if prop.kind not in ("ident", "op") or not IDENT.fullmatch(prop.text):
                    raise self._unexpected("expected a name", prop)
                chained = isinstance(node, Chain)
                receiver = node.node if isinstance(node, Chain) else node
                node = Member(receiver, Lit(prop.text), optional)
                if self._is("bracket", "("):
                    self._next()
                    node = Call(node, tuple(self._items(")")))
                node = Chain(node) if chained or optional else node
            else:
                return node

    def _subscript(self, node: Node, *, optional: bool) -> Node:
        start = None if self._is("op", ":") else self._expression(0)
        if self._is("op", ":"):
            self._next()
            stop = None if self._is("bracket", "]") else self._expression(0)
            self._expect("bracket", "]")
            return Slice(node, start, stop)
        self._expect("bracket", "]")
        assert start is not None
        member = Member(node, start, optional)
        return Chain(member) if optional else member

"""The exception a check raises to report one problem, and how callers prefix it."""

from __future__ import annotations


class Invalid(Exception):
    """A problem on its way up; `message` is None when it was reported already."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message)
        self.message = message


def within(prefix: str, exc: Invalid) -> Invalid:
    """The same problem seen from an enclosing field: `prefix` goes before its message."""
    return Invalid(f"{prefix} {exc.message}") if exc.message is not None else exc

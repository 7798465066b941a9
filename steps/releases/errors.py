"""Errors of the release record store; each names the model, release or URI and the fix."""

from typing import ClassVar

from steps.errors import SourceError, StepError


class RecordError(StepError):
    """A release record or alias cannot be read or written as asked."""


class RecordNotFound(RecordError, SourceError):
    """No record of that model and release in the store (or no store at that URI)."""

    #: EX_NOINPUT, permanent: asking again does not make the record appear.
    exit_code: ClassVar[int] = SourceError.exit_code


class RecordExists(RecordError):
    """A record with that release id is already stored; records are never replaced."""


class ReleaseConflict(RecordError):
    """An alias moved between the read and the conditional write: another release won.

    Attributes:
        winner: The release the alias names now (None when it was removed meanwhile).
    """

    def __init__(self, message: str, winner: str | None) -> None:
        super().__init__(message)
        self.winner = winner


class ConditionalWritesIgnored(RecordError):
    """The S3 server accepts `If-None-Match` / `If-Match` on PutObject without honouring them.

    On such a store two releases could both believe they became production, so aliases are
    not moved there at all.
    """

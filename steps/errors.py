"""Errors raised by step programs; each message says what is wrong and how to fix it.

Each error also says whether it can heal, by the exit code a step's container ends with when
the error stops it (`exit_code`). Argo's `retryStrategy.expression` reads that code as
`lastRetry.exitCode` (see `steps/_retry.py`), so a store that is down for a while is waited
out while a missing bucket fails at once. The codes come from sysexits.h and avoid the two
Argo gives a meaning of its own: 64 (the emissary's own failure, `cmd/argoexec/commands/
emissary.go`) and 65 (a failed pre-main supervisor, `workflow/common/common.go`).
"""

from typing import ClassVar

from workflows.exceptions import LLMFlowError


class StepError(LLMFlowError):
    """Base class of errors a step raises on purpose."""

    #: 1, as for a crash: a failure nobody classified is retried within the limit.
    exit_code: ClassVar[int] = 1


class SourceError(StepError):
    """A weights source cannot be read: bad URI, missing bucket or prefix, refused credentials."""

    #: EX_NOINPUT, permanent: no retry makes a bucket appear or a refused key valid.
    exit_code: ClassVar[int] = 66


class TransferError(StepError):
    """A download broke off (connection dropped, server gone); the next run resumes it."""

    #: EX_TEMPFAIL, transient: a later attempt resumes from the chunks this one finished.
    exit_code: ClassVar[int] = 75


class IntegrityError(StepError):
    """Downloaded or cached bytes do not match the size or checksum the source declares.

    Permanent: a store whose bytes disagree with its own listing sends the same bytes again,
    and each retry would download the whole file anew. An object replaced while it was being
    fetched also lands here; the release then names other weights than when it started, and a
    person should start it again knowingly.
    """

    #: EX_PROTOCOL: the store broke its word about the bytes (EX_DATAERR, 65, is Argo's).
    exit_code: ClassVar[int] = 76

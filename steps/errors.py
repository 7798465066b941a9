"""Errors raised by step programs; each message says what is wrong and how to fix it."""

from workflows.exceptions import LLMFlowError


class StepError(LLMFlowError):
    """Base class of errors a step raises on purpose."""


class SourceError(StepError):
    """A weights source cannot be read: bad URI, missing bucket or prefix, refused credentials."""


class TransferError(StepError):
    """A download broke off (connection dropped, server gone); the next run resumes it."""


class IntegrityError(StepError):
    """Downloaded or cached bytes do not match the size or checksum the source declares."""

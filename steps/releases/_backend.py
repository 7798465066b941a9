"""What the record store needs of a place to keep small objects.

Reads that return a version tag, create-only writes, and writes conditional on the tag read
before: enough for immutable records and for aliases that only one writer can move.
"""

from typing import NamedTuple, Protocol


class Blob(NamedTuple):
    """An object's bytes and the tag of that version of it (an S3 ETag, a content hash)."""

    data: bytes
    etag: str


class Exists(Exception):
    """A create-only write found the object there already."""


class Changed(Exception):
    """A conditional write found another version than the one it was conditioned on."""


class Backend(Protocol):
    """Small objects under one root, addressed by `/`-separated keys relative to it."""

    #: The root as a URI (`s3://bucket/prefix`, `file:///path`), for messages.
    uri: str

    def read(self, key: str) -> Blob | None:
        """The object at `key`, or None when there is none."""
        ...

    def create(self, key: str, data: bytes) -> None:
        """Store `data` at `key` unless something is there; raises `Exists` if it is."""
        ...

    def swap(self, key: str, data: bytes, etag: str | None) -> str:
        """Replace the version tagged `etag` (None: create), atomically; else raise `Changed`.

        Returns the new version's tag.
        """
        ...

    def names(self, folder: str) -> list[str]:
        """Names of the objects directly in `folder`, unsorted; empty when there are none."""
        ...

    def check_conditions(self) -> None:
        """Raise `ConditionalWritesIgnored` unless `swap` really is conditional here."""
        ...

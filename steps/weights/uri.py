"""Parsing of weights source URIs: `s3://bucket/prefix`, `hf://org/name@revision`, `file:///path`.

One parser serves the release spec (to reject a bad URI before anything is submitted) and the
fetch step (to pick the source), so both agree on what a valid URI is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from steps.errors import SourceError

Scheme = Literal["s3", "hf", "file"]

_FIX = "use s3://bucket/prefix, hf://org/name@revision or file:///absolute/path"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")


@dataclass(frozen=True)
class SourceURI:
    """A parsed weights source.

    Attributes:
        scheme: `s3`, `hf` or `file`.
        location: The bucket (s3), the repository id `org/name` (hf) or the absolute path (file).
        prefix: The key prefix inside the bucket, always ending in `/` (s3 only).
        revision: The git revision (hf only).
        raw: The URI as written.
    """

    scheme: Scheme
    location: str
    prefix: str = ""
    revision: str = ""
    raw: str = ""

    def __str__(self) -> str:
        return self.raw


def parse_source_uri(uri: str) -> SourceURI:
    """Parse and check a weights source URI.

    Raises:
        SourceError: naming the URI, what is wrong with it, and the accepted forms.
    """
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        bucket, prefix = parts.netloc, parts.path.lstrip("/")
        if not bucket:
            raise SourceError(f"source {uri!r} has no bucket; write s3://bucket/prefix")
        if not _BUCKET.match(bucket):
            raise SourceError(
                f"source {uri!r}: {bucket!r} is not a valid S3 bucket name "
                "(3-63 lowercase letters, digits, '.' or '-')"
            )
        if not prefix.strip("/"):
            raise SourceError(
                f"source {uri!r} names a whole bucket; add the model's prefix, "
                f"e.g. s3://{bucket}/models/my-model"
            )
        return SourceURI("s3", bucket, prefix.rstrip("/") + "/", raw=uri)
    if parts.scheme == "hf":
        repo, _, revision = (parts.netloc + parts.path).partition("@")
        if not _HF_REPO.match(repo):
            raise SourceError(f"source {uri!r}: {repo!r} is not a repository id like org/name")
        if not revision:
            raise SourceError(
                f"source {uri!r} has no revision; pin one so the cache is reproducible, "
                f"e.g. hf://{repo}@main or hf://{repo}@<commit sha>"
            )
        return SourceURI("hf", repo, revision=revision, raw=uri)
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise SourceError(f"source {uri!r} must be an absolute path: file:///abs/path")
        return SourceURI("file", parts.path.rstrip("/") or "/", raw=uri)
    shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
    raise SourceError(f"source {uri!r} has {shown}; {_FIX}")

"""The `records:` section of a release spec: where release records and aliases are kept."""

import re

from pydantic import Field, field_validator

from workflows.spec_base import Section, uri

_BUCKET = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]+$")


class RecordsSection(Section):
    """Where every release writes its record and moves the `production` alias.

    The store needs conditional writes (AWS S3, MinIO) to move aliases, or a `file://`
    folder; `steps.releases.store` says why, and refuses stores without them.
    """

    uri: str = Field(
        default="s3://llmflow-releases",
        description="store of release records: s3://bucket[/prefix] or file:///absolute/path; "
        "records go to <uri>/<model>/records/, aliases to <uri>/<model>/aliases/",
    )

    @field_validator("uri")
    @classmethod
    def _store(cls, value: str) -> str:
        if _BUCKET.match(value.rstrip("/")):
            return value.rstrip("/")  # a whole bucket
        try:
            return uri(value)
        except ValueError:
            raise ValueError(
                "must be s3://bucket, s3://bucket/prefix or file:///absolute/path"
            ) from None

"""Records in S3 (`s3://bucket/prefix`): create-only and swaps by conditional PutObject.

A record is written with `If-None-Match: *`, an alias with `If-Match: <ETag read before>`
(or `If-None-Match: *` when there was none). AWS S3 evaluates either atomically with the
write (since August and November 2024), answering 412 PreconditionFailed, or 409
ConditionalRequestConflict while another conditional write of the key is in flight.

Not every S3 server honours the headers. s3rver (3.7.1) reads neither on PUT, and writes;
moto's server (5.x) compares before it writes, without a lock, so under its default threads
two racing writers can both pass (`moto/s3/responses.py`, `put_object`). The first is
detected: before any swap, `check_conditions` writes a probe object twice with
`If-None-Match: *` and once with an `If-Match` no object has; a server that accepts any of
them ignores the headers, and the store refuses to move aliases on it (`records.uri` then
belongs on AWS S3, MinIO, or a `file://` folder). A server that checks but not atomically
cannot be told apart from outside.

Records on such a server are still create-only for writers one after another: `create`
looks for the key first. Two writers of one id at once would need one workflow name twice,
which Kubernetes does not give out.
"""

from typing import Any

from steps.releases._backend import Blob, Changed, Exists
from steps.releases.errors import ConditionalWritesIgnored, RecordError, RecordNotFound
from steps.weights.sources import s3_client

#: Where the probe of conditional writes lives, below the store's root.
PROBE_KEY = ".conditional-writes-probe"

#: An ETag no object has (S3's are MD5s, hex, 32 characters).
_NO_SUCH_ETAG = '"llmflow-no-object-has-this-etag"'

#: Error codes of a conditional write whose condition failed.
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def _code(exc: Exception) -> str:
    """The S3 error code of a refused request; "" for one that got no answer."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Backend:
    """Small objects below `s3://bucket/prefix`, through the environment's S3 client."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._honoured: bool | None = None
        self._ignored = ""

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> Blob | None:
        """GetObject: the body and its ETag, or None on NoSuchKey."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client().get_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                return None
            raise self._error(exc, key) from None
        return Blob(response["Body"].read(), str(response["ETag"]))

    def create(self, key: str, data: bytes) -> None:
        """PutObject with `If-None-Match: *`; on a server that ignores it, look first."""
        if not self.honours_conditions() and self.read(key) is not None:
            raise Exists(key)
        self._put(key, data, IfNoneMatch="*", on_condition=Exists)

    def swap(self, key: str, data: bytes, etag: str | None) -> str:
        """PutObject with `If-Match: etag`, or `If-None-Match: *` when there was none."""
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        return self._put(key, data, on_condition=Changed, **condition)

    def names(self, folder: str) -> list[str]:
        """ListObjectsV2 of `folder/`, one level."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self._key(folder).rstrip("/") + "/"
        names = []
        try:
            pages = self._client().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, folder) from None
        return names

    def honours_conditions(self) -> bool:
        """Whether this server refuses writes whose condition fails (probed once)."""
        if self._honoured is None:
            self._honoured, self._ignored = self._probe()
        return self._honoured

    def check_conditions(self) -> None:
        """Raise `ConditionalWritesIgnored` if the probe found the headers ignored."""
        if not self.honours_conditions():
            raise ConditionalWritesIgnored(
                f"{self.uri}: this S3 server ignores {self._ignored} on PutObject (a write "
                f"that should have been refused, of {self.uri}/{PROBE_KEY}, succeeded), so "
                "two releases could both become production; aliases are not moved on it. "
                "Keep records on AWS S3, MinIO or another store with conditional writes, or "
                "in a file:// folder (spec `records.uri`); s3rver has none"
            )

    def _probe(self) -> tuple[bool, str]:
        """Try writes that must be refused: a second create, and a swap of a version nobody has."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        key = self._key(PROBE_KEY)
        attempts = (  # the first creates the probe, or finds it there: either answer is fine
            ("If-None-Match", {"IfNoneMatch": "*"}),
            ("If-None-Match", {"IfNoneMatch": "*"}),
            ("If-Match", {"IfMatch": _NO_SUCH_ETAG}),
        )
        for number, (header, condition) in enumerate(attempts):
            try:
                client.put_object(Bucket=self.bucket, Key=key, Body=b"probe\n", **condition)
            except (BotoCoreError, ClientError) as exc:
                if _code(exc) in _CONDITION_FAILED:
                    continue
                if _code(exc) in {"NotImplemented", "501"}:
                    return False, header
                raise self._error(exc, PROBE_KEY) from None
            if number > 0:
                return False, header
        return True, ""

    def _put(self, key: str, data: bytes, on_condition: type[Exception], **condition: str) -> str:
        """PutObject under `condition`; the new ETag, or `on_condition` when it failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client().put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/json",
                **condition,
            )
        except (BotoCoreError, ClientError) as exc:
            code = _code(exc)
            if code in _CONDITION_FAILED or ("IfMatch" in condition and code == "NoSuchKey"):
                raise on_condition(key) from None
            raise self._error(exc, key) from None
        return str(response["ETag"])

    def _client(self) -> Any:
        return s3_client()

    def _error(self, exc: Exception, key: str) -> RecordError:
        """Our error for a refused request, naming the object and the likely fix."""
        uri = f"{self.uri}/{key}"
        code = _code(exc)
        if code == "NoSuchBucket":
            return RecordNotFound(
                f"{uri}: bucket {self.bucket!r} does not exist; create it or fix `records.uri`"
            )
        if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return RecordError(
                f"{uri}: refused ({code}); check the S3 credentials (AWS_* variables, or the "
                "Secret `storage.credentials_secret` names)"
            )
        if type(exc).__name__ == "NoCredentialsError":
            return RecordError(
                f"{uri}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(in a pod: the Secret `storage.credentials_secret` names)"
            )
        if not code:
            return RecordError(
                f"{uri}: no answer from the S3 server ({exc}); check AWS_ENDPOINT_URL and the "
                "network"
            )
        return RecordError(f"{uri}: {exc}")

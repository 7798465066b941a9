"""Sources of model weights: list a model's files once, then read byte ranges of them in parallel.

A `Source` gives two things: a listing (path, size, content tag) that is all a cache hit costs,
and per-thread `RangeReader`s that fill caller-owned buffers, so the downloader moves bytes from
socket to disk without copies. S3 reads go through presigned URLs over plain keep-alive HTTP
connections: signing happens once per file, and each worker holds its own connection.
"""

from __future__ import annotations

import http.client
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from steps.errors import IntegrityError, SourceError, StepError, TransferError
from steps.weights.checksum import CRC_ALGORITHMS, etag_parts, s3_checksum
from steps.weights.uri import SourceURI, parse_source_uri

#: Receives each block of a range: (offset of the block in the file, the block).
Sink = Callable[[int, memoryview], None]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a model as its source lists it.

    Attributes:
        path: Path relative to the model's root, with `/` separators.
        size: Size in bytes.
        etag: The source's content tag. For S3 the object's ETag: the hex MD5 of the content, or
            for multipart uploads the MD5 of the parts' MD5s followed by `-<parts>`. For local
            files, size and modification time (a version tag, not a checksum). The cache's
            digest is made of paths, sizes and these tags.
        checksum: A checksum beyond the ETag that the bytes must match, as
            `<algorithm>:<hex>` (an algorithm of `steps.weights.checksum.ALGORITHMS`), or "".
            Preferred over the ETag when present: S3's CRCs are far cheaper to verify than MD5.
    """

    path: str
    size: int
    etag: str
    checksum: str = ""

    @property
    def etag_is_checksum(self) -> bool:
        """Whether `etag` is an MD5 the downloaded bytes can be checked against."""
        head = self.etag.split("-")[0]
        return len(head) == 32 and all(c in "0123456789abcdef" for c in head)


class RangeReader(ABC):
    """Reads byte ranges of a source's files; one per worker thread, never shared."""

    @abstractmethod
    def read_range(
        self, file: RemoteFile, offset: int, length: int, buffer: memoryview, sink: Sink
    ) -> None:
        """Stream `length` bytes of `file` from `offset`, block by block through `buffer`.

        Each filled block goes to `sink(offset_of_block, block)` before the buffer is reused,
        so a range of any size costs one request and one buffer of memory.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or file handles."""


class Source(ABC):
    """A place model weights come from."""

    def __init__(self, uri: SourceURI) -> None:
        self.uri = uri

    @abstractmethod
    def list_files(self) -> list[RemoteFile]:
        """List the model's files (one listing call, no reads).

        Raises:
            SourceError: the location does not exist, is empty, or refuses our credentials.
        """

    @abstractmethod
    def reader(self) -> RangeReader:
        """A new reader for one worker thread."""

    def with_checksums(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """The files about to be downloaded, with any checksum the listing did not carry.

        Called only when something must be downloaded, so a cache hit stays one listing.
        """
        return files

    def resolved_revision(self) -> str:
        """The exact version `list_files` saw (e.g. a commit sha), recorded in the manifest."""
        return ""


def open_source(uri: str | SourceURI) -> Source:
    """The `Source` for a URI."""
    parsed = parse_source_uri(uri) if isinstance(uri, str) else uri
    if parsed.scheme == "s3":
        return S3Source(parsed)
    if parsed.scheme == "file":
        return FileSource(parsed)
    from steps.weights.hf import HFSource  # imports huggingface_hub only when used

    return HFSource(parsed)


def check_fetchable(uri: str) -> None:
    """Raise `SourceError` for a URI no source can fetch from, before anything runs."""
    parse_source_uri(uri)


def stream_body(
    response: http.client.HTTPResponse,
    where: str,
    offset: int,
    length: int,
    buffer: memoryview,
    sink: Sink,
) -> None:
    """Pass the `length` bytes of a ranged response to `sink`, block by block through `buffer`.

    Raises:
        TransferError: the connection closed early (the chunk is fetched again).
        IntegrityError: the server sent more bytes than the range holds.
    """
    end = offset + length
    while offset < end:
        view = buffer[: min(len(buffer), end - offset)]
        got = 0
        while got < len(view):
            n = response.readinto(view[got:])
            if not n:
                raise TransferError(f"{where}: connection closed at byte {offset + got}")
            got += n
        sink(offset, view)
        offset += got
    if response.read(1):
        raise IntegrityError(f"{where}: server sent more bytes than asked")


class FileSource(Source):
    """A model folder on a local or mounted filesystem (`file:///path`)."""

    def list_files(self) -> list[RemoteFile]:
        """List regular files below the folder, skipping hidden ones."""
        root = Path(self.uri.location)
        if not root.is_dir():
            raise SourceError(f"source {self.uri.raw!r}: no such folder {root}")
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath, name)
                stat = full.stat()
                rel = full.relative_to(root).as_posix()
                files.append(
                    RemoteFile(rel, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")
                )
        if not files:
            raise SourceError(f"source {self.uri.raw!r}: the folder holds no files")
        return files

    def reader(self) -> RangeReader:
        """A reader that keeps each source file open across chunks."""
        return _FileRangeReader(Path(self.uri.location))


class _FileRangeReader(RangeReader):
    def __init__(self, root: Path) -> None:
        self._root = root
        self._fds: dict[str, int] = {}

    def read_range(
        self, file: RemoteFile, offset: int, length: int, buffer: memoryview, sink: Sink
    ) -> None:
        fd = self._fds.get(file.path)
        if fd is None:
            fd = self._fds[file.path] = os.open(self._root / file.path, os.O_RDONLY)
        end = offset + length
        while offset < end:
            view = buffer[: min(len(buffer), end - offset)]
            n = os.preadv(fd, [view], offset)
            if n == 0:
                raise IntegrityError(
                    f"{self._root / file.path} is shorter than listed ({file.size} bytes); "
                    "it changed while being copied, run again"
                )
            sink(offset, view[:n])
            offset += n

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class S3Source(Source):
    """A model under an S3 prefix, on AWS or any S3-compatible store.

    Credentials, endpoint and region come from the environment the way boto3 reads them
    (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`): in a pod
    they are set from a Kubernetes Secret, never written into a manifest.
    """

    #: Presigned URLs live long enough for a multi-hundred-GB model on a slow link.
    URL_EXPIRY_S = 7 * 24 * 3600

    def __init__(self, uri: SourceURI) -> None:
        super().__init__(uri)
        self._client = s3_client()
        self._urls: dict[str, str] = {}
        self._urls_lock = threading.Lock()
        self._advertised: dict[str, str] = {}  # path -> the CRC the listing says it has

    def list_files(self) -> list[RemoteFile]:
        """List every object under the prefix (paginated), skipping folder markers."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        bucket, prefix = self.uri.location, self.uri.prefix
        files = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(prefix) :]
                    if rel and not rel.endswith("/"):
                        files.append(RemoteFile(rel, obj["Size"], obj["ETag"].strip('"')))
                        crcs = [a.lower() for a in obj.get("ChecksumAlgorithm", [])]
                        crcs = [a for a in crcs if a in CRC_ALGORITHMS]
                        if crcs:
                            self._advertised[rel] = crcs[0]
        except ClientError as exc:
            raise self._client_error(exc) from None
        except NoCredentialsError:
            raise SourceError(
                f"source {self.uri.raw!r}: no S3 credentials; put AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the Secret the spec names (storage.credentials_secret), "
                "or give the pod an IAM role"
            ) from None
        except BotoCoreError as exc:
            raise TransferError(
                f"source {self.uri.raw!r}: cannot reach S3 ({exc}); check AWS_ENDPOINT_URL "
                "and that the store is up"
            ) from None
        if not files:
            raise SourceError(
                f"source {self.uri.raw!r}: no objects under this prefix; check the path "
                f"(e.g. `aws s3 ls s3://{bucket}/{prefix}`)"
            )
        return sorted(files, key=lambda f: f.path)

    def with_checksums(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """Ask the store for the full-object CRC of each file the listing says has one.

        One HEAD per such file (in parallel), made only when downloading: verifying a CRC
        costs a tenth of the CPU of the MD5 in the ETag. Files without one keep the ETag.
        """
        wanted = [f for f in files if f.path in self._advertised and not f.checksum]
        if not wanted:
            return files
        with ThreadPoolExecutor(min(16, len(wanted)), thread_name_prefix="head") as pool:
            found = dict(zip((f.path for f in wanted), pool.map(self._crc_of, wanted), strict=True))
        return [replace(f, checksum=found.get(f.path) or f.checksum) for f in files]

    def _crc_of(self, file: RemoteFile) -> str:
        """The object's full-object CRC as a `RemoteFile.checksum`, or "" if it has none."""
        from botocore.exceptions import BotoCoreError, ClientError

        algorithm = self._advertised[file.path]
        try:
            head = self._client.head_object(
                Bucket=self.uri.location,
                Key=self.uri.prefix + file.path,
                IfMatch=f'"{file.etag}"',
                ChecksumMode="ENABLED",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
                raise IntegrityError(
                    f"{self.uri.raw.rstrip('/')}/{file.path} changed on the server since it was "
                    "listed; run again"
                ) from None
            raise self._client_error(exc) from None
        except BotoCoreError as exc:
            raise TransferError(f"source {self.uri.raw!r}: cannot reach S3 ({exc})") from None
        value = head.get(f"Checksum{algorithm.upper()}", "")
        # A multipart object's CRC covers the whole object only when S3 says FULL_OBJECT; the
        # COMPOSITE kind (a CRC of part CRCs) is left to the ETag.
        whole = not etag_parts(file.etag) or head.get("ChecksumType") == "FULL_OBJECT"
        if not value or "-" in value or not whole:
            return ""
        return s3_checksum(algorithm, value)

    def _client_error(self, exc: Exception) -> StepError:
        """A refusal that no retry heals is a SourceError; a store that is struggling is not."""
        response = getattr(exc, "response", {})
        code = response.get("Error", {}).get("Code", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUSES or status >= 500:
            return TransferError(
                f"source {self.uri.raw!r}: S3 is unavailable ({code or status}); it is retried"
            )
        return SourceError(self._explain(exc))

    def _explain(self, exc: Exception) -> str:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        where = f"source {self.uri.raw!r}"
        if code == "NoSuchBucket":
            return f"{where}: bucket {self.uri.location!r} does not exist; check the bucket name"
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}:
            return (
                f"{where}: S3 refused the credentials ({code}); check the Secret that sets "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and the bucket policy"
            )
        return f"{where}: S3 answered {code or exc}"

    def url_for(self, file: RemoteFile) -> str:
        """A presigned GET URL for one file, made once and shared by all workers."""
        with self._urls_lock:
            url = self._urls.get(file.path)
            if url is None:
                url = self._client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.uri.location, "Key": self.uri.prefix + file.path},
                    ExpiresIn=self.URL_EXPIRY_S,
                )
                self._urls[file.path] = url
            return url

    def reader(self) -> RangeReader:
        """A reader with its own keep-alive connection."""
        return _HttpRangeReader(self)


#: S3 answers that mean "not now" (throttling, a failing or restarting node), not "never".
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
_TRANSIENT_STATUSES = {408, 429}

_CLIENTS: dict[tuple[str | None, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def s3_client() -> Any:
    """A boto3 S3 client for the current environment, reused while the environment is the same.

    Building a client loads botocore's service model (tens of ms), which would dominate a
    cache hit; but boto3's default session keeps the first credentials it saw forever. So
    clients are cached by the settings they were built from, and a change makes a new one.
    """
    import boto3
    from botocore.config import Config

    keys = (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    )
    settings = tuple(os.environ.get(k) for k in keys)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(settings)
        if client is None:
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"} if endpoint else {},
            )
            session = boto3.session.Session()
            client = session.client("s3", endpoint_url=endpoint or None, config=config)
            _CLIENTS[settings] = client
        return client


class _HttpRangeReader(RangeReader):
    """Ranged GETs on one keep-alive connection, read straight into the caller's buffer."""

    def __init__(self, source: S3Source) -> None:
        self._source = source
        self._conn: http.client.HTTPConnection | None = None
        self._netloc = ""

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if self._conn is None or netloc != self._netloc:
            self.close()
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            self._conn, self._netloc = cls(netloc, timeout=60), netloc
        return self._conn

    def read_range(
        self, file: RemoteFile, offset: int, length: int, buffer: memoryview, sink: Sink
    ) -> None:
        if length == 0:
            return
        parts = urlsplit(self._source.url_for(file))
        headers = {
            "Range": f"bytes={offset}-{offset + length - 1}",
            "If-Match": f'"{file.etag}"',
        }
        conn = self._connection(parts.scheme, parts.netloc)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
            response = conn.getresponse()
            if response.status != 206:
                body = response.read(2048)
                self.close()
                raise self._status_error(file, response.status, body)
            stream_body(response, self._where(file), offset, length, buffer, sink)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransferError(f"{self._where(file)}: {type(exc).__name__}: {exc}") from None

    def _where(self, file: RemoteFile) -> str:
        return f"{self._source.uri.raw.rstrip('/')}/{file.path}"

    def _status_error(self, file: RemoteFile, status: int, body: bytes) -> Exception:
        if status == 412:
            return IntegrityError(
                f"{self._where(file)} changed on the server while downloading; run again"
            )
        if status in (401, 403):
            return SourceError(f"{self._where(file)}: S3 refused the request (HTTP {status})")
        if status >= 500 or status in _TRANSIENT_STATUSES:
            return TransferError(f"{self._where(file)}: server busy or failing, HTTP {status}")
        snippet = body[:200].decode("utf-8", "replace")
        return SourceError(f"{self._where(file)}: unexpected HTTP {status}: {snippet}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

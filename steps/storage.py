"""Small objects by URI (`s3://bucket/key` or `file:///path`): datasets, checkpoints, summaries.

Training and evaluation steps read their inputs and write their results here; the weights
cache (`steps.weights`) handles the big, verified, resumable downloads. Writes are atomic
for local files (write then rename) and single PUTs on S3, so a reader never sees half.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from steps.errors import SourceError
from steps.weights.sources import s3_client


def _split(uri: str) -> tuple[str, str, str]:
    parts = urlsplit(uri)
    if parts.scheme == "s3" and parts.netloc:
        return "s3", parts.netloc, parts.path.lstrip("/")
    if parts.scheme == "file" and parts.path.startswith("/"):
        return "file", "", parts.path
    if not parts.scheme and uri.startswith("/"):
        return "file", "", uri
    raise SourceError(f"{uri!r}: use s3://bucket/key or file:///absolute/path")


def join(uri: str, *names: str) -> str:
    """`uri/name/...` with single slashes."""
    return "/".join([uri.rstrip("/"), *(n.strip("/") for n in names)])


def upload(local: Path, uri: str) -> None:
    """Copy a local file to a URI."""
    scheme, bucket, key = _split(uri)
    if scheme == "s3":
        s3_client().upload_file(str(local), bucket, key)
        return
    target = Path(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    shutil.copyfile(local, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def download(uri: str, local: Path) -> None:
    """Copy a URI to a local file."""
    scheme, bucket, key = _split(uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    if scheme == "s3":
        from botocore.exceptions import ClientError

        try:
            s3_client().download_file(bucket, key, str(local))
        except ClientError as exc:
            raise SourceError(f"{uri}: cannot read it ({exc})") from None
        return
    try:
        shutil.copyfile(key, local)
    except FileNotFoundError:
        raise SourceError(f"{uri}: no such file") from None


def write_text(uri: str, text: str) -> None:
    """Write a small text object."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "object"
        path.write_text(text)
        upload(path, uri)


def read_text(uri: str) -> str | None:
    """A small text object, or None when it does not exist."""
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        try:
            return Path(key).read_text()
        except FileNotFoundError:
            return None
    from botocore.exceptions import ClientError

    try:
        return str(s3_client().get_object(Bucket=bucket, Key=key)["Body"].read().decode())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise SourceError(f"{uri}: cannot read it ({exc})") from None


def upload_folder(local: Path, uri: str) -> None:
    """Copy every file below a folder to `uri/<relative path>`."""
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        upload(path, join(uri, path.relative_to(local).as_posix()))

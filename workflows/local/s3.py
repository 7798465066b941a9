"""A local S3 server (s3rver) for `make demo`, the tests and the benchmarks.

s3rver keeps objects as files on disk and serves byte ranges from them, so it behaves like a
real store under parallel ranged reads (moto's server re-reads the whole object per range).
`make test` installs it with npm into the virtual environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from workflows.exceptions import LLMFlowError

#: s3rver's built-in account.
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"


def find_s3rver() -> str:
    """Path of the s3rver executable: $LLMFLOW_S3RVER, the venv's npm folder, or PATH."""
    candidates = [
        os.environ.get("LLMFLOW_S3RVER", ""),
        str(Path(sys.prefix) / "node" / "node_modules" / ".bin" / "s3rver"),
        shutil.which("s3rver") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LLMFlowError(
        "s3rver not found; `make test` installs it (npm install --prefix .venv/node s3rver), "
        "or set LLMFLOW_S3RVER to its path"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalS3:
    """An s3rver process on 127.0.0.1 with its data in a folder; restartable on the same port."""

    def __init__(self, data_dir: str | Path, buckets: tuple[str, ...] = (), port: int = 0):
        self.data_dir = Path(data_dir)
        self.buckets = buckets
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id (for CPU accounting in benchmarks)."""
        if self._proc is None:
            raise LLMFlowError("s3rver is not running")
        return self._proc.pid

    def env(self) -> dict[str, str]:
        """The AWS variables that point boto3 (and llmflow's steps) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def client(self, **overrides: str) -> Any:
        """A boto3 S3 client for this server."""
        import boto3
        from botocore.config import Config

        env = {**self.env(), **overrides}
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def start(self, timeout: float = 20.0) -> LocalS3:
        """Start the server and wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            find_s3rver(),
            "-d",
            str(self.data_dir),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--silent",
        ]
        for bucket in self.buckets:
            cmd += ["--configure-bucket", bucket]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise LLMFlowError(f"s3rver exited at start: {err.strip()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise LLMFlowError(f"s3rver did not listen on port {self.port} within {timeout:.0f} s")

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), dropping open connections mid-transfer."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        """Stop the server gracefully, then for good."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def upload_folder(client: Any, folder: Path, bucket: str, prefix: str) -> int:
    """Upload every file below `folder` to `s3://bucket/prefix/`; returns the number of files."""
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}"
        client.upload_file(str(path), bucket, key)
        count += 1
    return count

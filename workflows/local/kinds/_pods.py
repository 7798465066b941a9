"""Detached processes that outlive the run that started them: pods, nginx, Prometheus.

A process is started in a session of its own (its process group is the unit that is
stopped, so vLLM's engine-core and worker children go with it) and is known afterwards by
its pid plus its start time in the kernel's clock ticks, which guards against a reused pid:
a later `llmflow` process can tell whether the pod it reads about is still the same process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Processes this Python process started: polled (reaped) instead of left as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
#: Exit codes of those that ended, by pid (as a container's: 128 + signal when killed).
_EXITED: dict[int, int] = {}


def launch(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int, int]:
    """Start a detached process group; returns (pid, start ticks).

    Raises:
        OSError: the program cannot be executed.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid, start_ticks(proc.pid) or 0


def start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        _reap(pid)
        return None
    return int(fields[19])


def _poll(pid: int) -> bool:
    """Poll a child of ours; True when it has ended (its exit code is then kept)."""
    proc = _CHILDREN.get(pid)
    if proc is None or proc.poll() is None:
        return False
    code = proc.returncode
    _EXITED[pid] = code if code >= 0 else 128 - code
    del _CHILDREN[pid]
    return True


def _reap(pid: int) -> None:
    if pid in _CHILDREN:
        _poll(pid)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int | None, ticks: int | None = None) -> bool:
    """Whether the process `pid` (started at `ticks`, when given) still runs."""
    if not pid:
        return False
    if _poll(pid):
        return False
    current = start_ticks(pid)
    if current is None:
        return False
    return not ticks or current == ticks


def exit_code(pid: int) -> int | None:
    """The exit code of a process this process started and that has ended, else None."""
    _poll(pid)
    return _EXITED.pop(pid, None)


def group_alive(pgid: int) -> bool:
    """Whether any process of a process group is left."""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a process group, if it still exists."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(pid: int, ticks: int | None = None, grace: float = 10.0) -> None:
    """Stop a process group: SIGTERM, then SIGKILL what is left after `grace` seconds.

    A group whose leader is no longer the recorded process (a reused pid) is left alone.
    """
    if not pid:
        return
    if ticks and start_ticks(pid) not in (None, ticks):
        return
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pid):
        time.sleep(0.1)
    if group_alive(pid):
        signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.05)
    _poll(pid)
    _EXITED.pop(pid, None)


def http_ok(url: str, timeout: float = 1.0, method: str = "GET") -> bool:
    """Whether a URL answers 2xx or 3xx (as a kubelet's httpGet probe counts success)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ("" when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port` (a restarted process may keep its port)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

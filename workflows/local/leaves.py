"""Leaf templates run locally: container and script as processes, resource, suspend.

Each function takes the node it runs and the resolved template, sets the node's phase and
message, and returns the outputs Argo would collect (stdout as `result`, files as parameters).
They never raise for a failure of the step itself: that is the node's phase. They do raise
`RunError` for what Argo would also refuse (a missing Secret key, an unresolved reference).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from workflows.exceptions import RunError
from workflows.local.expressions import evaluate_condition, lookup
from workflows.local.paths import PathMapper
from workflows.local.store import Node

if TYPE_CHECKING:
    from workflows.local.engine import Run
    from workflows.local.platform import LocalPlatform

#: How much of stdout is kept as `outputs.result` (Argo keeps 256 kB too).
RESULT_LIMIT = 256 * 1024

#: Seconds between status polls of a resource or a suspended node.
POLL_S = 0.2


def run_process(
    run: Run, node: Node, template: dict[str, Any], mapper: PathMapper, command: list[str]
) -> None:
    """Run a container or script template's command as a local process group.

    `command` is the container's, or its image's mapped entrypoint; the container's args
    follow it, then (for a script with a `source`) the script file, as Argo's executor does.
    """
    body = template.get("container") or template["script"]
    command = local_command([mapper.rewrite(c) for c in command])
    if not command:
        raise RunError(
            f"template {template['name']!r}: image {body.get('image')!r} has no command and no "
            "entrypoint in the image map; give the container a command, or map the image "
            "(`llmflow run --image-map MAP.yaml`, see README)"
        )
    args = [mapper.rewrite(a) for a in body.get("args") or []]
    node_dir = run.store.node_dir(node.id)
    if "script" in template and body.get("source"):
        script = node_dir / "script"
        script.write_text(mapper.rewrite(body["source"]))
        script.chmod(0o755)  # `sh -c` runs it as a program, as Argo's executable script file
        args.append(str(script))
    env = {**run.env, **resolve_env(run.platform, body.get("env") or [], mapper, template["name"])}
    cwd = mapper.local(body["workingDir"]) if body.get("workingDir") else run.workdir
    Path(cwd).mkdir(parents=True, exist_ok=True)
    deadline = _seconds(template.get("activeDeadlineSeconds"))
    log_path = node_dir / "main.log"
    try:
        proc = subprocess.Popen(
            [command[0], *command[1:], *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        reason = (
            "executable file not found in $PATH"
            if isinstance(exc, FileNotFoundError)
            else exc.strerror
        )
        node.phase = "Failed"
        node.message = f'failed to start command: exec: "{command[0]}": {reason}'
        return
    stdout = bytearray()
    with open(log_path, "ab") as log, run.tracking(proc):
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, log, stdout), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, log, None), daemon=True),
        ]
        for reader in readers:
            reader.start()
        timed_out = _wait(run, proc, deadline)
        for reader in readers:
            reader.join()
    # A process ended by a signal reports 128 + the signal, as a container's exit code does.
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    node.outputs["exitCode"] = str(code)
    result = stdout[-RESULT_LIMIT:].decode("utf-8", "replace").rstrip("\n")
    if result:
        node.outputs["result"] = result
    if timed_out:
        node.phase = "Failed"
        node.message = "Pod was active on the node longer than the specified deadline"
    elif run.stopping.is_set():
        node.phase, node.message = "Failed", run.stop_reason
    elif code == 0:
        node.phase = "Succeeded"
    else:
        node.phase, node.message = "Failed", f"main: Error (exit code {code})"
        if body.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = _log_tail(log_path)
            if tail:
                node.message += f": {tail}"


def _log_tail(path: Path) -> str:
    """What Kubernetes' FallbackToLogsOnError keeps: the last 80 lines or 2048 bytes."""
    data = path.read_bytes()
    tail = data[-2048:].decode("utf-8", "replace")
    lines = tail.strip().splitlines()
    if len(data) > 2048 and len(lines) > 1:
        lines = lines[1:]  # the cut fell inside the first line
    return "\n".join(lines[-80:])


def local_command(command: list[str]) -> list[str]:
    """A pod's command for this machine: `python` and `torchrun` of this environment."""
    if command and command[0] in {"python", "python3"}:
        return [sys.executable, *command[1:]]
    if command and command[0] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    return command


def resolve_env(
    platform: LocalPlatform, env: list[dict[str, Any]], mapper: PathMapper, where: str
) -> dict[str, str]:
    """A container's env list as values: literals (paths rewritten), Secret and ConfigMap keys."""
    out: dict[str, str] = {}
    for item in env:
        name = item["name"]
        if "value" in item:
            out[name] = mapper.rewrite(str(item["value"]))
            continue
        value_from: dict[str, dict[str, Any]] = item.get("valueFrom") or {}
        ref_kind = next(iter(value_from), "")
        ref = value_from.get(ref_kind, {})
        kind = "Secret" if ref_kind == "secretKeyRef" else "ConfigMap"
        value = platform.key_ref(kind, platform.namespace, ref.get("name", ""), ref.get("key", ""))
        if value is None:
            if ref.get("optional"):
                continue
            hint = f" or export {ref.get('key')}" if kind == "Secret" else ""
            raise RunError(
                f"{where}: env {name} needs key {ref.get('key')!r} of {kind} "
                f"{ref.get('name')!r}, which does not exist locally; create it with a resource "
                f"template{hint}"
            )
        out[name] = value
    return out


def _pump(stream: IO[bytes] | None, log: IO[bytes], keep: bytearray | None) -> None:
    if stream is None:
        return
    for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
        log.write(chunk)
        log.flush()
        if keep is not None:
            keep.extend(chunk)
            if len(keep) > 2 * RESULT_LIMIT:
                del keep[:-RESULT_LIMIT]


def _wait(run: Run, proc: subprocess.Popen[bytes], deadline: float | None) -> bool:
    """Wait for the process; end it at the deadline or when the run stops. True if timed out."""
    started = time.monotonic()
    while True:
        try:
            proc.wait(timeout=0.1)
            return False
        except subprocess.TimeoutExpired:
            pass
        expired = deadline is not None and time.monotonic() - started > deadline
        if expired or run.stopping.is_set():
            terminate(proc)
            return expired


def terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End a process group: SIGTERM, then SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _seconds(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def run_resource(run: Run, node: Node, template: dict[str, Any]) -> dict[str, Any] | None:
    """Act on a manifest through the LocalPlatform and wait on its conditions."""
    spec = template["resource"]
    try:
        manifest = yaml.safe_load(spec.get("manifest") or "")
    except yaml.YAMLError as exc:
        node.phase, node.message = "Error", f"manifest is not valid YAML: {exc}"
        return None
    if not isinstance(manifest, dict):
        node.phase, node.message = "Error", "manifest is not an object"
        return None
    action = spec.get("action", "")
    if spec.get("setOwnerReference"):
        owner_reference(run, manifest)
    try:
        obj = run.platform.act(action, manifest)
    except RunError as exc:
        node.phase, node.message = "Failed", str(exc)
        return None
    success, failure = spec.get("successCondition"), spec.get("failureCondition")
    if obj is None or not (success or failure):
        node.phase = "Succeeded"
        return obj
    meta = obj.get("metadata") or {}
    deadline = _seconds(template.get("activeDeadlineSeconds"))
    started = time.monotonic()
    while True:
        current = run.platform.get(obj["kind"], meta.get("namespace", ""), meta.get("name", ""))
        if current is None:
            node.phase, node.message = "Failed", f"{obj['kind']} {meta.get('name')} disappeared"
            return None
        if failure and evaluate_condition(failure, current, any_term=True):
            node.phase, node.message = "Failed", f"failure condition '{failure}' matched"
            reason = _failed_condition(current)
            if reason:
                node.message += f": {reason}"
            return current
        if success and evaluate_condition(success, current):
            node.phase = "Succeeded"
            return current
        if run.stopping.is_set():
            node.phase, node.message = "Failed", run.stop_reason
            return current
        if deadline is not None and time.monotonic() - started > deadline:
            node.phase = "Failed"
            node.message = "Step exceeded its deadline"
            return current
        time.sleep(POLL_S)


def owner_reference(run: Run, manifest: dict[str, Any]) -> None:
    """Make the Workflow the object's controller, as Argo does for `setOwnerReference`.

    Deleting the run (`llmflow runs delete`) then deletes the object, as Kubernetes' garbage
    collector deletes what a deleted Workflow owns.
    """
    meta = manifest.setdefault("metadata", {})
    meta.setdefault("ownerReferences", []).append(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "name": run.name,
            "uid": run.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    )


def _failed_condition(obj: dict[str, Any]) -> str:
    """Why an object failed, from its status conditions, to follow "failure condition matched".

    Controllers fill a condition's message with the cause. A job reports it in a `Failed`
    condition (PyTorchJob: status True), whose message is returned as is. A Deployment has none:
    a stuck rollout is `Progressing` False with reason ProgressDeadlineExceeded and a message
    that quotes the crashing pod's log. So without a `Failed` condition, every condition with
    status False and a reason and message is returned as "<type> <reason>: <message>", joined
    by "; " in the object's order.
    """
    conditions = (obj.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Failed" and condition.get("message"):
            return str(condition["message"])
    return "; ".join(
        f"{c.get('type')} {c['reason']}: {c['message']}"
        for c in conditions
        if str(c.get("status")) == "False" and c.get("reason") and c.get("message")
    )


def json_path(obj: Any, expression: str) -> str:
    """A `{.a.b}` JSONPath (the subset resource outputs use) into an object."""
    path = expression.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    value = lookup(obj, path.lstrip("."))
    if value is None:
        raise RunError(f"jsonPath {expression!r} matches nothing in the resource")
    return value if isinstance(value, str) else json.dumps(value)


def run_suspend(
    run: Run, node: Node, template: dict[str, Any], on_wait: Callable[[], None]
) -> None:
    """Wait for `llmflow runs resume`, the duration, or the run to stop."""
    duration = duration_seconds(str((template.get("suspend") or {}).get("duration") or ""))
    started = time.monotonic()
    node.message = "suspended: resume with `llmflow runs resume " + run.store.name + "`"
    on_wait()
    while True:
        if run.store.resume_marker.exists():
            node.phase, node.message = "Succeeded", "resumed"
            return
        if duration is not None and time.monotonic() - started >= duration:
            node.phase, node.message = "Succeeded", ""
            return
        if run.stopping.is_set():
            node.phase, node.message = "Failed", run.stop_reason
            return
        time.sleep(POLL_S)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float | None:
    """Argo durations: `30`, `30s`, `2m`, `1h30m`, `500ms`; empty means none."""
    text = text.strip()
    if not text:
        return None
    if text.replace(".", "", 1).isdigit():
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise RunError(f"duration {text!r} is not like 30s, 2m or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)

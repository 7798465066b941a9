"""Serving images as local runtimes: which program a pod's container runs on this machine.

A pod's image cannot run here (no container runtime), so each serving image maps to a local
environment that runs the same command: `vllm/vllm-openai[:tag]` (any registry) runs
`python3 -m vllm.entrypoints.openai.api_server ...` with the Python of `.venv/vllm` (built by
`make setup`; override with env `LLMFLOW_VLLM_PYTHON`). The server listens on 127.0.0.1 and a
free port instead of the container port, on one core of its own (vLLM's CPU backend binds its
threads to `VLLM_CPU_OMP_THREADS_BIND`), offline (HF_HUB_OFFLINE=1). An image with no local
runtime is an error that names it.

The model runs in vLLM's engine process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), not in a worker
process of its own: the worker waits for the engine's next step by spinning on shared memory
for a second after each one, so under steady traffic every server kept its core busy whether
or not it had work, and on two cores the servers, the gateway and the clients starved each
other. A pod's single compute thread (`OMP_NUM_THREADS=1`) needs none of what the worker
process is for.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.paths import PathMapper

#: Images with a local runtime (repository without registry and tag).
VLLM_IMAGE = "vllm/vllm-openai"
#: The image's entrypoint, for containers that give no command.
VLLM_ENTRYPOINT = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
#: The port vLLM listens on when `--port` is not given.
VLLM_DEFAULT_PORT = 8000
#: Environment variables a pod never inherits from this machine's environment.
DROPPED_ENV = ("PYTHONPATH", "VIRTUAL_ENV", "VLLM_CPU_KVCACHE_SPACE", "PYTHONHOME")


def repository(image: str) -> str:
    """An image reference without registry host, tag and digest: `vllm/vllm-openai`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name.rsplit(":", 1)[0]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def vllm_python(env: dict[str, str], workdir: Path) -> Path:
    """The Python of the local vLLM environment.

    Raises:
        RunError: none is built.
    """
    if env.get("LLMFLOW_VLLM_PYTHON"):
        return Path(env["LLMFLOW_VLLM_PYTHON"])
    package_root = Path(__file__).resolve().parents[3]
    for base in (workdir, package_root):
        candidate = base / ".venv" / "vllm" / "bin" / "python"
        if candidate.is_file():
            return candidate
    raise RunError(
        f"image {VLLM_IMAGE} runs locally with the vLLM environment {workdir}/.venv/vllm, "
        "which is not built; run `make setup` (or `make .venv/vllm/.installed`), or set "
        "LLMFLOW_VLLM_PYTHON to a Python that has vllm installed"
    )


def check_image(image: str, where: str) -> None:
    """Fail unless an image has a local runtime.

    Raises:
        RunError: naming the image and what to do.
    """
    if repository(image) != VLLM_IMAGE:
        raise RunError(
            f"{where}: image {image!r} has no local runtime; locally a Deployment can run "
            f"{VLLM_IMAGE}[:tag] (served by .venv/vllm). Serve the model with that image, or "
            "run this Deployment on a cluster (`llmflow submit`)"
        )


def pod_command(
    container: dict[str, Any],
    mapper: PathMapper,
    port: int,
    env: dict[str, str],
    workdir: Path,
    where: str,
) -> list[str]:
    """The local command of a serving container, listening on 127.0.0.1:`port`."""
    check_image(str(container.get("image") or ""), where)
    command = list(container.get("command") or VLLM_ENTRYPOINT)
    args = [mapper.rewrite(str(a)) for a in container.get("args") or []]
    command = [mapper.rewrite(str(c)) for c in command]
    if command[0] in {"python", "python3"}:
        command = [str(vllm_python(env, workdir)), *command[1:]]
    elif command[0] == "vllm":  # `vllm serve MODEL ...`
        command = [str(vllm_python(env, workdir)), "-m", "vllm.entrypoints.cli.main", *command[1:]]
    else:
        raise RunError(
            f"{where}: command {command[0]!r} of image {container.get('image')!r} has no local "
            "equivalent; use `python3 -m vllm.entrypoints.openai.api_server` or `vllm serve`"
        )
    full = _set_flag(_set_flag([*command, *args], "--port", str(port)), "--host", "127.0.0.1")
    return full


def container_port(container: dict[str, Any]) -> int:
    """The port the server listens on in the pod: its `--port`, else vLLM's default."""
    words = [str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])]]
    for i, word in enumerate(words):
        if word == "--port" and i + 1 < len(words):
            return int(words[i + 1])
        if word.startswith("--port="):
            return int(word.split("=", 1)[1])
    return VLLM_DEFAULT_PORT


def local_ports(container: dict[str, Any], local: int) -> dict[str, int]:
    """The pod's local port by container port number and name (for targetPort and probes)."""
    served = container_port(container)
    ports = {str(served): local}
    for item in container.get("ports") or []:
        if int(item.get("containerPort", 0)) == served and item.get("name"):
            ports[str(item["name"])] = local
    return ports


def _set_flag(words: list[str], flag: str, value: str) -> list[str]:
    out, found, skip = [], False, False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word == flag and i + 1 < len(words):
            out += [flag, value]
            found, skip = True, True
        elif re.fullmatch(rf"{re.escape(flag)}=.*", word):
            out.append(f"{flag}={value}")
            found = True
        else:
            out.append(word)
    return out if found else [*out, flag, value]


def pod_env(base: dict[str, str], container_env: dict[str, str], core: int) -> dict[str, str]:
    """A serving pod's environment: the run's (less what would leak), the container's, one core."""
    env = {k: v for k, v in base.items() if k not in DROPPED_ENV}
    env.update({k: v for k, v in container_env.items() if k != "VLLM_CPU_KVCACHE_SPACE"})
    env.update(
        VLLM_CPU_OMP_THREADS_BIND=str(core),
        OMP_NUM_THREADS="1",
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    return env


def least_used_core(cores: set[int], used: list[int]) -> int:
    """The core the fewest live pods are bound to (the lowest on a tie)."""
    counts = Counter(c for c in used if c in cores)
    return min(sorted(cores), key=lambda c: counts[c])

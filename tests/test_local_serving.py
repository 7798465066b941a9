"""The local platform keeps serving: Deployment, Service, HTTPRoute, ServiceMonitor, `local`.

Real components: two real vLLM servers of the tiny model (stable and canary, started once for
the module and in parallel, one core each), a real nginx gateway, a real Prometheus. The
rolling-update and crash-loop mechanics are checked against a small stand-in HTTP server (a
third and fourth vLLM start would cost minutes); everything vLLM-specific (the command, env,
probes, completions, metrics) is checked against vLLM itself. vLLM starts in the module: two,
plus one restart after the pod is killed. A finalizer runs `llmflow local down`, so nothing
is left running.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from serving.endpoints import NoEndpoints, resolve
from tests.processes import descendants
from tests.vllm_server import TINY_SERVED_NAME, require_vllm
from workflows.cli import main
from workflows.exceptions import RunError
from workflows.local.kinds import _pods
from workflows.local.kinds.overview import down
from workflows.local.platform import LocalPlatform

NAMESPACE = "llmflow"
IMAGE = "vllm/vllm-openai:v0.32.0"
DIGEST = "0123456789ab"
#: Where the pods' hostPath model cache lands under the platform's home.
HOST_CACHE = "/var/lib/llmflow/models"
#: Seconds for two vLLM servers to become ready side by side on this machine.
READY_TIMEOUT_S = 420.0
LABELS = {"app.kubernetes.io/name": "tiny-llama", "app.kubernetes.io/part-of": "llmflow"}


def require_binaries() -> None:
    """Fail (never skip) when nginx or Prometheus is missing."""
    for name, fallback in (("nginx", "/usr/sbin/nginx"), ("prometheus", "/usr/bin/prometheus")):
        if not shutil.which(name) and not os.access(fallback, os.X_OK):
            pytest.fail(f"{name} is not installed; run `make setup`", pytrace=False)


# --- manifests, shaped as serving/deployment.py, routing.py and monitoring.py build them -------


def deployment(
    track: str, version: str, image: str = IMAGE, args: list[str] | None = None
) -> dict[str, Any]:
    labels = {**LABELS, "track": track, "version": version}
    selector = {k: v for k, v in labels.items() if k != "version"}
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"tiny-llama-{track}", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": image,
                            "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                            "args": args
                            or [
                                *("--model", f"/models/tiny-llama/{DIGEST}"),
                                *("--served-model-name", TINY_SERVED_NAME),
                                *("--host", "0.0.0.0", "--port", "8000"),
                                *("--tensor-parallel-size", "1", "--dtype", "float32"),
                                *("--kv-cache-memory-bytes", "64M", "--enforce-eager"),
                                *("--seed", "0"),
                            ],
                            "env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "4"}],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": probe,
                            "livenessProbe": probe,
                            "startupProbe": {**probe, "failureThreshold": 120},
                            "volumeMounts": [
                                {"name": "model-cache", "mountPath": "/models", "readOnly": True},
                                {"name": "dshm", "mountPath": "/dev/shm"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "model-cache", "hostPath": {"path": HOST_CACHE}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
        },
    }


def service(track: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"tiny-llama-{track}",
            "namespace": NAMESPACE,
            "labels": {**LABELS, "track": track},
        },
        "spec": {
            "selector": {**LABELS, "track": track},
            "ports": [{"name": "http", "port": 8000, "targetPort": "http"}],
        },
    }


def route(stable: int, canary: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "tiny-llama", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "llmflow-gateway"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "tiny-llama-stable", "port": 8000, "weight": stable},
                        {"name": "tiny-llama-canary", "port": 8000, "weight": canary},
                    ],
                }
            ],
        },
    }


def service_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "tiny-llama", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "tiny-llama"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "2s"}],
            "podTargetLabels": ["version", "track"],
        },
    }


# --- helpers -----------------------------------------------------------------------------


def pods_of(home: Path, name: str) -> list[dict[str, Any]]:
    """A Deployment's pods, less those draining after a rollout."""
    path = home / "platform" / NAMESPACE / "Deployment" / name / "pods.json"
    return [p for p in json.loads(path.read_text()) if not p.get("terminating")]


def services_map(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / "platform" / "services.json").read_text()))


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def ready(platform: LocalPlatform, name: str) -> int:
    obj = platform.get("Deployment", NAMESPACE, name)
    assert obj is not None
    return int(obj["status"].get("readyReplicas", 0))


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def upstreams(home: Path, since: int, count: int) -> list[str]:
    """Upstreams of the `count` GET /v1/models lines the gateway logged after line `since`.

    nginx writes a request's line after the response went out: wait until all are there.
    """
    path = home / "platform" / "gateway" / "access.log"
    found: list[str] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines()[since:]
        found = [
            m.group(1)
            for line in lines
            if '"GET /v1/models ' in line and (m := re.search(r"upstream=(\S+)", line))
        ]
        if len(found) >= count:
            break
        time.sleep(0.05)
    assert len(found) == count, f"{len(found)} requests logged, {count} sent"
    return found


def log_length(home: Path) -> int:
    path = home / "platform" / "gateway" / "access.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalPlatform, Path]]:
    """Stable and canary Deployments of the tiny model, each a real vLLM, with Services."""
    require_vllm()
    require_binaries()
    tiny_model: Path = request.getfixturevalue("tiny_model")
    home = tmp_path_factory.mktemp("serving") / ".llmflow"
    request.addfinalizer(lambda: down(home))
    cache = home / "volumes" / "host" / HOST_CACHE.strip("/") / "tiny-llama"
    cache.mkdir(parents=True)
    (cache / DIGEST).symlink_to(tiny_model, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "LLMFLOW_VLLM_PYTHON"}
    platform = LocalPlatform(home, NAMESPACE, env)
    request.addfinalizer(platform.close)
    for track in ("stable", "canary"):
        platform.act("apply", deployment(track, "v1" if track == "stable" else "v2"))
        platform.act("apply", service(track))
    began = time.monotonic()
    wait_for(
        lambda: (
            ready(platform, "tiny-llama-stable") == 1 and ready(platform, "tiny-llama-canary") == 1
        ),
        READY_TIMEOUT_S,
        "both vLLM pods to be ready",
    )
    print(f"two vLLM pods ready in {time.monotonic() - began:.0f} s")
    yield platform, home


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[LocalPlatform, Path]]:
    """A platform whose vllm image runs a small HTTP server (fast to start, told to fail)."""
    script = tmp_path / "stand_in.py"
    script.write_text(
        "import os, sys, time\n"
        "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "args = sys.argv[1:]\n"
        "port = int(args[args.index('--port') + 1])\n"
        "if '/missing' in ' '.join(args):\n"
        "    print('error: model path does not exist', flush=True)\n"
        "    sys.exit(3)\n"
        "time.sleep(1)\n"
        "class Handler(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = str(port).encode()\n"
        "        self.send_response(200)\n"
        "        self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "    def log_message(self, *a):\n"
        "        pass\n"
        "ThreadingHTTPServer(('127.0.0.1', port), Handler).serve_forever()\n"
    )
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    python.chmod(0o755)
    home = tmp_path / ".llmflow"
    platform = LocalPlatform(home, NAMESPACE, {**os.environ, "LLMFLOW_VLLM_PYTHON": str(python)})
    try:
        yield platform, home
    finally:
        platform.close()
        down(home)


# --- without vLLM ------------------------------------------------------------------------


def test_an_image_without_a_local_runtime_is_a_clear_error(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path / ".llmflow", NAMESPACE)
    with pytest.raises(
        RunError, match=r"image 'nginx:1.25' has no local runtime.*vllm/vllm-openai"
    ):
        platform.act("apply", deployment("stable", "v1", image="nginx:1.25"))
    assert platform.get("Deployment", NAMESPACE, "tiny-llama-stable") is None


def test_resolve_rewrites_service_urls_from_the_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://tiny-llama-canary.llmflow.svc.cluster.local:8000/v1/completions"
    monkeypatch.delenv("LLMFLOW_SERVICES", raising=False)
    assert resolve(url) == url  # on a cluster DNS does this
    path = tmp_path / "services.json"
    path.write_text(
        json.dumps(
            {
                "tiny-llama-canary.llmflow": {"port": 8000, "endpoints": ["127.0.0.1:4242"]},
                "tiny-llama-stable.llmflow": {"port": 8000, "endpoints": []},
            }
        )
    )
    monkeypatch.setenv("LLMFLOW_SERVICES", str(path))
    assert resolve(url) == "http://127.0.0.1:4242/v1/completions"
    for host in ("tiny-llama-canary", "tiny-llama-canary.llmflow", "tiny-llama-canary.llmflow.svc"):
        assert resolve(f"http://{host}:8000/health?x=1") == "http://127.0.0.1:4242/health?x=1"
    assert resolve("http://example.com/v1") == "http://example.com/v1"
    with pytest.raises(NoEndpoints, match="tiny-llama-stable.llmflow has no ready endpoint"):
        resolve("http://tiny-llama-stable.llmflow:8000/v1/models")
    ports = {"8000": ["127.0.0.1:4242"], "http": ["127.0.0.1:4242"]}
    path.write_text(json.dumps({"tiny-llama-canary.llmflow": {"port": 8000, "ports": ports}}))
    with pytest.raises(NoEndpoints, match=r"has no port 9000 \(its ports: 8000\)"):
        resolve("http://tiny-llama-canary.llmflow:9000/v1/models")


def test_rolling_update_scaling_and_crash_loop(stand_in: tuple[LocalPlatform, Path]) -> None:
    platform, home = stand_in
    platform.act("apply", deployment("canary", "v1", args=["--model", "/models/ok"]))
    platform.act("apply", service("canary"))
    wait_for(lambda: ready(platform, "tiny-llama-canary") == 1, 30, "the stand-in pod")
    (old,) = pods_of(home, "tiny-llama-canary")
    assert services_map(home)["tiny-llama-canary.llmflow"]["endpoints"] == [
        f"127.0.0.1:{old['port']}"
    ]

    # a new template rolls out with maxSurge 1, maxUnavailable 0: never without a ready pod
    platform.act("apply", deployment("canary", "v2", args=["--model", "/models/ok"]))
    seen = set()
    while True:
        obj = platform.get("Deployment", NAMESPACE, "tiny-llama-canary")
        assert obj is not None
        status = obj["status"]
        assert status.get("readyReplicas", 0) >= 1, status
        assert services_map(home)["tiny-llama-canary.llmflow"]["endpoints"]
        seen.add(status.get("replicas"))
        if status.get("updatedReplicas") == 1 and status.get("replicas") == 1:
            break
        time.sleep(0.1)
    assert seen == {1, 2}
    assert status["observedGeneration"] == 2
    (new,) = pods_of(home, "tiny-llama-canary")
    assert new["labels"]["version"] == "v2" and new["pid"] != old["pid"]
    assert [c["reason"] for c in status["conditions"]] == [
        "MinimumReplicasAvailable",
        "NewReplicaSetAvailable",
    ]
    wait_for(lambda: not _pods.group_alive(old["pid"]), 20, "the old pod to stop after its drain")

    # scaling
    platform.act(
        "patch",
        {"kind": "Deployment", "metadata": {"name": "tiny-llama-canary"}, "spec": {"replicas": 2}},
    )
    wait_for(lambda: ready(platform, "tiny-llama-canary") == 2, 30, "two replicas")
    assert len(services_map(home)["tiny-llama-canary.llmflow"]["endpoints"]) == 2

    # a pod that exits before it is ready: CrashLoopBackOff, reported as the deadline passing
    platform.act(
        "patch",
        {
            "kind": "Deployment",
            "metadata": {"name": "tiny-llama-canary"},
            "spec": {
                "replicas": 1,
                "template": {
                    "spec": {
                        "containers": [{"name": "vllm", "args": ["--model", "/models/missing"]}]
                    }
                },
            },
        },
    )

    def stuck() -> dict[str, Any] | None:
        obj = platform.get("Deployment", NAMESPACE, "tiny-llama-canary")
        assert obj is not None
        progressing = obj["status"]["conditions"][1]
        return progressing if progressing["status"] == "False" else None

    progressing = wait_for(stuck, 60, "the crash loop to be reported", interval=0.2)
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert "CrashLoopBackOff" in progressing["message"]
    assert "exited with code 3" in progressing["message"]
    assert "error: model path does not exist" in progressing["message"]
    # the old pods keep serving: maxUnavailable 0
    assert ready(platform, "tiny-llama-canary") >= 1
    assert services_map(home)["tiny-llama-canary.llmflow"]["endpoints"]

    pids = [p["pid"] for p in pods_of(home, "tiny-llama-canary") if p.get("pid")]
    platform.act("delete", {"kind": "Deployment", "metadata": {"name": "tiny-llama-canary"}})
    assert platform.get("Deployment", NAMESPACE, "tiny-llama-canary") is None
    assert not any(_pods.group_alive(pid) for pid in pids)
    assert services_map(home)["tiny-llama-canary.llmflow"]["endpoints"] == []


# --- with vLLM ---------------------------------------------------------------------------


def test_deployment_is_ready_and_a_new_platform_finds_it(
    served: tuple[LocalPlatform, Path],
) -> None:
    platform, home = served
    obj = platform.get("Deployment", NAMESPACE, "tiny-llama-stable")
    assert obj is not None
    status = obj["status"]
    assert status["replicas"] == status["updatedReplicas"] == status["availableReplicas"] == 1
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Available": "True",
        "Progressing": "True",
    }
    (pod,) = pods_of(home, "tiny-llama-stable")
    # a later `llmflow run`: another platform instance finds the object and its live process
    later = LocalPlatform(home, NAMESPACE)
    try:
        found = later.get("Deployment", NAMESPACE, "tiny-llama-stable")
        assert found is not None and found["status"]["readyReplicas"] == 1
        assert pods_of(home, "tiny-llama-stable")[0]["pid"] == pod["pid"]
    finally:
        later.close()
    # the pod runs vLLM on its own port and core, with the model from the hostPath cache
    cmdline = Path(f"/proc/{pod['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"--port" in cmdline and str(pod["port"]).encode() in cmdline
    assert str(home / "volumes" / "host").encode() in b" ".join(cmdline)
    environ = dict(
        item.split(b"=", 1)
        for item in Path(f"/proc/{pod['pid']}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    assert b"VLLM_CPU_KVCACHE_SPACE" not in environ
    assert environ[b"OMP_NUM_THREADS"] == b"1" and environ[b"HF_HUB_OFFLINE"] == b"1"
    # the model runs in the engine process: no worker process spinning between steps
    names = [Path(f"/proc/{p}/comm").read_text().strip() for p in descendants(pod["pid"])]
    assert "VLLM::EngineCor" in names and "VLLM::Worker" not in names, names  # comm: 15 chars
    canary = pods_of(home, "tiny-llama-canary")[0]
    if len(os.sched_getaffinity(0)) >= 2:  # one core per server
        assert pod["core"] != canary["core"]
        assert environ[b"VLLM_CPU_OMP_THREADS_BIND"] == str(pod["core"]).encode()
    assert services_map(home)["tiny-llama-stable.llmflow"]["endpoints"] == [
        f"127.0.0.1:{pod['port']}"
    ]


def test_gateway_serves_completions_and_splits_by_weight(
    served: tuple[LocalPlatform, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, home = served
    obj = platform.act("apply", route(80, 20))
    assert obj is not None
    conditions = {c["type"]: c for c in obj["status"]["parents"][0]["conditions"]}
    assert conditions["Accepted"]["status"] == conditions["ResolvedRefs"]["status"] == "True"
    gateway = services_map(home)["llmflow-gateway.llmflow"]["endpoints"][0]
    url = f"http://{gateway}"
    # a step reaches the gateway by its cluster name through the services map
    monkeypatch.setenv("LLMFLOW_SERVICES", str(home / "platform" / "services.json"))
    assert (
        resolve("http://llmflow-gateway.llmflow.svc.cluster.local/v1/models") == f"{url}/v1/models"
    )

    completion = http(
        f"{url}/v1/completions", {"model": TINY_SERVED_NAME, "prompt": "Hello", "max_tokens": 4}
    )
    assert completion["choices"] and completion["model"] == TINY_SERVED_NAME

    stable = f"127.0.0.1:{pods_of(home, 'tiny-llama-stable')[0]['port']}"
    canary = f"127.0.0.1:{pods_of(home, 'tiny-llama-canary')[0]['port']}"
    n = 200
    start = log_length(home)
    for _ in range(n):
        http(f"{url}/v1/models")
    counts = collections.Counter(upstreams(home, start, n))
    assert set(counts) == {stable, canary}
    # binomial(200, 0.2): mean 40, sd 5.7; 4 sd either side
    assert abs(counts[canary] - 40) <= 23, counts

    platform.act("apply", route(100, 0))
    start = log_length(home)
    for _ in range(30):
        http(f"{url}/v1/models")
    assert set(upstreams(home, start, 30)) == {stable}  # weight 0: no traffic

    # a backend Service that does not exist: ResolvedRefs False, BackendNotFound
    broken = route(50, 50)
    broken["spec"]["rules"][0]["backendRefs"][1]["name"] = "tiny-llama-nothing"
    obj = platform.act("apply", broken)
    assert obj is not None
    resolved = obj["status"]["parents"][0]["conditions"][1]
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert "tiny-llama-nothing" in resolved["message"]
    assert http(f"{url}/v1/models")["data"]  # its share goes to the backend that exists


def test_weight_changes_drop_no_request(served: tuple[LocalPlatform, Path]) -> None:
    platform, home = served
    platform.act("apply", route(90, 10))
    url = f"http://{services_map(home)['llmflow-gateway.llmflow']['endpoints'][0]}"
    errors: list[str] = []
    done = [0]
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            try:
                http(f"{url}/v1/models", timeout=30)
                done[0] += 1
            except (urllib.error.URLError, OSError) as exc:
                errors.append(repr(exc))

    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    try:
        for stable, canary in ((50, 50), (0, 100), (100, 0), (10, 90), (90, 10)):
            platform.act("apply", route(stable, canary))
            time.sleep(0.5)
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    assert errors == [] and done[0] > 20


def test_service_monitor_scrapes_with_version_and_track(
    served: tuple[LocalPlatform, Path],
) -> None:
    platform, home = served
    platform.act("apply", service_monitor())
    prometheus = services_map(home)["prometheus-operated.monitoring"]["endpoints"][0]

    def targets() -> list[dict[str, Any]] | None:
        data = http(f"http://{prometheus}/api/v1/targets")["data"]["activeTargets"]
        up = [t for t in data if t["health"] == "up"]
        return up if len(up) == 2 else None

    up = wait_for(targets, 60, "both vLLM targets up in Prometheus")
    labels = sorted((t["labels"]["track"], t["labels"]["version"]) for t in up)
    assert labels == [("canary", "v2"), ("stable", "v1")]
    assert {t["scrapePool"] for t in up} == {f"serviceMonitor/{NAMESPACE}/tiny-llama/0"}
    assert {t["labels"]["service"] for t in up} == {"tiny-llama-stable", "tiny-llama-canary"}

    def series() -> set[str] | None:
        query = urllib.parse.quote("count by (version) (vllm:num_requests_running)")
        result = http(f"http://{prometheus}/api/v1/query?query={query}")["data"]["result"]
        versions = {r["metric"].get("version", "") for r in result}
        return versions if versions == {"v1", "v2"} else None

    wait_for(series, 60, "vLLM series with a version label")


def test_killed_pod_is_not_ready_then_restarted(
    served: tuple[LocalPlatform, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, home = served
    (pod,) = pods_of(home, "tiny-llama-stable")
    os.killpg(pod["pid"], signal.SIGKILL)
    wait_for(lambda: not _pods.alive(pod["pid"], pod["ticks"]), 10, "the pod to die")
    obj = platform.get("Deployment", NAMESPACE, "tiny-llama-stable")
    assert obj is not None
    assert obj["status"].get("readyReplicas", 0) == 0
    assert obj["status"]["conditions"][0]["status"] == "False"  # Available
    (restarted,) = pods_of(home, "tiny-llama-stable")
    assert restarted["restarts"] == 1 and restarted["pid"] != pod["pid"]
    assert _pods.alive(restarted["pid"], restarted["ticks"])
    # out of the Service and the gateway at once
    monkeypatch.setenv("LLMFLOW_SERVICES", str(home / "platform" / "services.json"))
    with pytest.raises(NoEndpoints):
        resolve("http://tiny-llama-stable.llmflow:8000/v1/models")
    url = f"http://{services_map(home)['llmflow-gateway.llmflow']['endpoints'][0]}"
    start = log_length(home)
    for _ in range(10):
        http(f"{url}/v1/models")
    canary = f"127.0.0.1:{pods_of(home, 'tiny-llama-canary')[0]['port']}"
    assert set(upstreams(home, start, 10)) == {canary}
    wait_for(lambda: ready(platform, "tiny-llama-stable") == 1, READY_TIMEOUT_S, "the restart")


def test_local_status_and_down(served: tuple[LocalPlatform, Path]) -> None:
    platform, home = served
    platform.act(
        "apply",
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "tiny-llama", "namespace": NAMESPACE},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
        },
    )
    runner = CliRunner()
    result = runner.invoke(main, ["local", "--root", str(home), "status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    kinds = {(o["kind"], o["name"]): o for o in report["objects"]}
    assert kinds[("Deployment", "tiny-llama-stable")]["ready"] == "1/1"
    assert kinds[("Deployment", "tiny-llama-canary")]["version"] == "v2"
    assert "not acted on locally" in kinds[("PodDisruptionBudget", "tiny-llama")]["note"]
    assert {("Service", "tiny-llama-stable"), ("HTTPRoute", "tiny-llama")} <= set(kinds)
    procs = report["processes"]
    assert {p["kind"] for p in procs} == {"pod", "nginx", "prometheus"}
    assert all(p["alive"] and p["healthy"] for p in procs), procs
    assert report["gateways"] and report["prometheus"]
    text = runner.invoke(main, ["local", "--root", str(home), "status"])
    assert "tiny-llama-stable" in text.output and "curl" in text.output

    nginx_workers = [
        int(p.parent.name)
        for p in Path("/proc").glob("[0-9]*/stat")
        if _ppid(p) == next(x["pid"] for x in procs if x["kind"] == "nginx")
    ]
    pids = [p["pid"] for p in procs] + nginx_workers
    result = runner.invoke(main, ["local", "--root", str(home), "down"])
    assert result.exit_code == 0, result.output
    assert "stopped nginx gateway" in result.output
    assert not [pid for pid in pids if _pods.alive(pid)]
    assert not (home / "platform" / "services.json").exists()
    again = runner.invoke(main, ["local", "--root", str(home), "down"])
    assert "nothing was running" in again.output
    assert platform.get("Deployment", NAMESPACE, "tiny-llama-stable") is None


def _ppid(stat: Path) -> int:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1

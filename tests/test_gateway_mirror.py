"""The local gateway's RequestMirror: copies reach the mirror, and never hold up a client.

Real nginx and the real mirror relay; the pods are small stand-in HTTP servers
(`tests/mirror_stand_in.py`) run by the local Deployment runtime: stable and canary answer
clients, shadow receives the copies. Each records what it gets; a control file makes shadow
sleep 2 s or answer 500. The one case nginx alone gets wrong (it holds a client's keep-alive
connection, and a `Connection: close` client's end of response, until a mirror subrequest
ends) is checked with the exact client patterns that expose it.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_local_serving import (
    NAMESPACE,
    deployment,
    pods_of,
    ready,
    require_binaries,
    service,
    services_map,
    wait_for,
)
from workflows.exceptions import RunError
from workflows.local.kinds._endpoints import Endpoint, ServiceEndpoints, ServicePort
from workflows.local.kinds._mirror import RELAY_SCRIPT, nginx_share
from workflows.local.kinds._nginx import LocalGateway
from workflows.local.kinds.overview import down
from workflows.local.platform import LocalPlatform
from workflows.local.s3 import free_port

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "tests" / "mirror_stand_in.py"
TRACKS = ("stable", "canary", "shadow")
#: The request body and headers every mirrored copy must carry unchanged.
BODY = {"model": "tiny-llama", "prompt": "Hello", "max_tokens": 4}
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-test"}
#: "Not held for the mirror's 2 s sleep": far above a local request, far below the sleep.
NOT_HELD_S = 1.0


@dataclass
class Mirrored:
    """The module's platform, its gateway URL and the stand-ins' record and control files."""

    platform: LocalPlatform
    home: Path
    folder: Path

    @property
    def url(self) -> str:
        return f"http://{services_map(self.home)['llmflow-gateway.llmflow']['endpoints'][0]}"

    @property
    def address(self) -> tuple[str, int]:
        host, port = services_map(self.home)["llmflow-gateway.llmflow"]["endpoints"][0].split(":")
        return host, int(port)

    def tell(self, role: str, **behaviour: Any) -> None:
        (self.folder / "control.json").write_text(json.dumps({role: behaviour}))

    def records(self, role: str) -> list[dict[str, Any]]:
        path = self.folder / f"{role}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def requests(self, role: str) -> list[dict[str, Any]]:
        return [r for r in self.records(role) if "event" not in r]

    def apply_route(self, filters: list[dict[str, Any]] | None, **weights: int) -> dict[str, Any]:
        obj = self.platform.act("apply", route(filters, **weights))
        assert obj is not None
        return obj


def route(filters: list[dict[str, Any]] | None, **weights: int) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [
            {"name": f"tiny-llama-{track}", "port": 8000, "weight": weight}
            for track, weight in (weights or {"stable": 100}).items()
        ],
    }
    if filters is not None:
        rule["filters"] = filters
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "tiny-llama", "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": "llmflow-gateway"}], "rules": [rule]},
    }


def mirror(name: str = "tiny-llama-shadow", **share: Any) -> dict[str, Any]:
    return {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": name, "port": 8000}, **share},
    }


def send(
    conn: http.client.HTTPConnection, method: str = "POST", path: str = "/v1/completions"
) -> tuple[int, dict[str, Any], float]:
    """One request on a connection: status, JSON answer, seconds to the end of the answer."""
    began = time.monotonic()
    body = json.dumps(BODY) if method in ("POST", "PUT") else None
    conn.request(method, path, body=body, headers=HEADERS)
    response = conn.getresponse()
    data = response.read()
    return response.status, json.loads(data), time.monotonic() - began


def wait_count(mirrored: Mirrored, role: str, count: int, timeout: float = 10) -> list[Any]:
    return list(
        wait_for(
            lambda: found if len(found := mirrored.requests(role)) >= count else None,
            timeout,
            f"{count} requests at {role}",
            interval=0.05,
        )
    )


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    """Stable, canary and shadow stand-in pods with their Services, on one local platform."""
    require_binaries()
    folder = tmp_path_factory.mktemp("mirror")
    python = folder / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {STAND_IN} "$@"\n')
    python.chmod(0o755)
    home = folder / ".llmflow"
    platform = LocalPlatform(home, NAMESPACE, {**os.environ, "LLMFLOW_VLLM_PYTHON": str(python)})
    try:
        for track in TRACKS:
            obj = deployment(track, "v1", args=["--model", "/models/ok"])
            obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
                {"name": "STAND_IN_ROLE", "value": track},
                {"name": "STAND_IN_RECORD", "value": str(folder / f"{track}.jsonl")},
                {"name": "STAND_IN_CONTROL", "value": str(folder / "control.json")},
            ]
            platform.act("apply", obj)
            platform.act("apply", service(track))
        wait_for(
            lambda: all(ready(platform, f"tiny-llama-{t}") == 1 for t in TRACKS),
            60,
            "the stand-in pods",
        )
        yield Mirrored(platform, home, folder)
    finally:
        platform.close()
        down(home)


@pytest.fixture(autouse=True)
def calm(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with stand-ins that answer at once and empty records."""
    if "mirrored" in request.fixturenames:
        found: Mirrored = request.getfixturevalue("mirrored")
        (found.folder / "control.json").write_text("{}")
        for track in TRACKS:
            (found.folder / f"{track}.jsonl").unlink(missing_ok=True)
    yield


# --- with nginx, the relay and stand-in pods ------------------------------------------------


def test_every_request_is_mirrored_with_its_method_path_body_and_headers(
    mirrored: Mirrored,
) -> None:
    obj = mirrored.apply_route([mirror(percent=100)])
    resolved = obj["status"]["parents"][0]["conditions"][1]
    assert (resolved["type"], resolved["status"]) == ("ResolvedRefs", "True")
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    sent = [("POST", "/v1/completions"), ("GET", "/v1/models?limit=2"), ("PUT", "/v1/x")] * 5
    for method, path in sent:
        status, answer, _ = send(conn, method, path)
        assert status == 200 and answer["role"] == "stable"  # clients get stable's answers
    conn.close()
    copies = wait_count(mirrored, "shadow", len(sent))
    originals = {r["request_id"]: r for r in mirrored.requests("stable")}
    assert len(copies) == len(originals) == len(sent)
    for copy in copies:
        # the copy has the gateway's request id with a suffix of its own
        original = originals[copy["request_id"].removesuffix("-mirror")]
        for key in ("method", "path", "body", "content_type", "authorization"):
            assert copy[key] == original[key], (key, copy, original)
    assert sorted((c["method"], c["path"]) for c in copies) == sorted(sent)
    assert json.loads(next(c for c in copies if c["method"] == "POST")["body"]) == BODY
    # the relay outlives this platform object, as nginx does: a later run finds it
    gateway = LocalGateway(mirrored.home / "platform")
    relay_pid = gateway.relay.pid()
    assert relay_pid is not None
    stats = gateway.relay.stats()
    assert stats is not None and stats["forwarded"] >= len(sent) and stats["dropped"] == 0


@pytest.mark.parametrize(
    "share", [{"percent": 50}, {"fraction": {"numerator": 1, "denominator": 2}}]
)
def test_a_share_is_mirrored_independently_of_the_weight_split(
    mirrored: Mirrored, share: dict[str, Any]
) -> None:
    mirrored.apply_route([mirror(**share)], stable=50, canary=50)
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    n = 200
    served = {}
    for _ in range(n):
        status, answer, _ = send(conn, "GET", "/v1/models")
        assert status == 200
        served[answer["request_id"]] = answer["role"]
    conn.close()
    time.sleep(1.0)  # copies are sent after the answers: let the last ones land
    copied = {r["request_id"].removesuffix("-mirror") for r in mirrored.requests("shadow")}
    assert copied <= set(served)
    # binomial(200, 0.5): mean 100, sd 7.1; 4 sd either side
    assert abs(len(copied) - 100) <= 28, len(copied)
    # independent of the weight split: each backend's requests are mirrored about half the
    # time (with the split's own key, one backend's would all be copied, the other's none)
    by_backend = collections.Counter((served[i], i in copied) for i in served)
    for backend in ("stable", "canary"):
        total = by_backend[(backend, True)] + by_backend[(backend, False)]
        assert total > 50, by_backend
        assert 0.25 < by_backend[(backend, True)] / total < 0.75, by_backend


def test_removing_the_filter_stops_mirroring(mirrored: Mirrored) -> None:
    mirrored.apply_route([mirror(percent=100)])
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    for _ in range(5):
        send(conn)
    wait_count(mirrored, "shadow", 5)
    conn.close()
    mirrored.apply_route(None)
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    for _ in range(10):
        assert send(conn)[0] == 200
    conn.close()
    time.sleep(0.5)
    assert len(mirrored.requests("shadow")) == 5
    assert len(mirrored.requests("stable")) == 15
    # percent 0: the filter is kept, nothing is copied
    mirrored.apply_route([mirror(percent=0)])
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    for _ in range(10):
        assert send(conn)[0] == 200
    conn.close()
    time.sleep(0.5)
    assert len(mirrored.requests("shadow")) == 5


def test_a_missing_mirror_service_is_reported_and_mirrors_nothing(mirrored: Mirrored) -> None:
    obj = mirrored.apply_route([mirror("tiny-llama-nothing", percent=100)])
    resolved = obj["status"]["parents"][0]["conditions"][1]
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert "tiny-llama-nothing" in resolved["message"]
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    for _ in range(5):
        status, answer, _ = send(conn)
        assert status == 200 and answer["role"] == "stable"
    conn.close()
    time.sleep(0.5)
    assert mirrored.requests("shadow") == []
    conf = (mirrored.home / "platform" / "gateway" / "nginx.conf").read_text()
    assert "mirror /" not in conf


def _raw_close(address: tuple[str, int], path: str, version: str) -> tuple[bytes, float]:
    """A request whose answer ends when nginx closes the connection; (answer, seconds)."""
    body = json.dumps(BODY).encode()
    head = (
        f"POST {path} {version}\r\nHost: gateway\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    began = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - began


def test_a_slow_failing_or_dead_mirror_never_holds_the_client(mirrored: Mirrored) -> None:
    mirrored.apply_route([mirror(percent=100)])
    mirrored.tell("shadow", sleep=2)
    # three requests on one keep-alive connection: nginx alone would hold the second and the
    # third until the copy of the one before ended (2 s each)
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    began, began_at = time.monotonic(), time.time()
    for _ in range(3):
        status, answer, _ = send(conn)
        assert status == 200 and answer["role"] == "stable"
    # a streamed answer on the same connection, read to its end
    conn.request("POST", "/stream", body=json.dumps(BODY), headers=HEADERS)
    response = conn.getresponse()
    assert response.status == 200 and response.read().count(b"data: stable") == 3
    kept_alive = time.monotonic() - began
    conn.close()
    # answers that end with the connection (Connection: close, HTTP/1.0): nginx alone closes
    # it only after the copy ended
    closing = [_raw_close(mirrored.address, p, v) for p, v in (("/v1/x", "HTTP/1.1"),) * 2]
    closing.append(_raw_close(mirrored.address, "/stream", "HTTP/1.0"))
    copies = wait_count(mirrored, "shadow", 7)
    assert kept_alive < NOT_HELD_S, f"keep-alive requests took {kept_alive:.2f} s"
    for raw, seconds in closing:
        assert raw.split(b" ", 2)[1] == b"200" and b"stable" in raw
        assert seconds < NOT_HELD_S, f"a closing request took {seconds:.2f} s"
    # the first copy reached the mirror before the keep-alive client was done: the client
    # finished while the mirror slept
    assert min(c["at"] for c in copies) < began_at + kept_alive

    # a mirror answering 500 changes nothing for the client
    mirrored.tell("shadow", status=500)
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    for _ in range(5):
        status, answer, seconds = send(conn)
        assert status == 200 and answer["role"] == "stable" and seconds < NOT_HELD_S
    conn.close()
    gateway = LocalGateway(mirrored.home / "platform")
    wait_for(
        lambda: ((gateway.relay.stats() or {}).get("statuses") or {}).get("500", 0) >= 5,
        10,
        "the relay to count five 500s",
        interval=0.1,
    )

    # a dead mirror (connection refused): the platform stops reconciling first, so the dead
    # pod stays an endpoint as it would until the kubelet noticed
    mirrored.platform.close()
    (pod,) = pods_of(mirrored.home, "tiny-llama-shadow")
    os.killpg(pod["pid"], signal.SIGKILL)
    wait_for(lambda: not _alive(pod["pid"]), 10, "the shadow pod to die", interval=0.05)
    failed = (gateway.relay.stats() or {}).get("failed", 0)
    conn = http.client.HTTPConnection(*mirrored.address, timeout=10)
    for _ in range(5):
        status, answer, seconds = send(conn)
        assert status == 200 and answer["role"] == "stable" and seconds < NOT_HELD_S
    conn.close()
    wait_for(
        lambda: (gateway.relay.stats() or {}).get("failed", 0) >= failed + 5,
        10,
        "the relay to count five refused copies",
        interval=0.1,
    )


def test_local_down_stops_the_relay(mirrored: Mirrored) -> None:
    gateway = LocalGateway(mirrored.home / "platform")
    mirrored.apply_route([mirror(percent=100)])
    pid = gateway.relay.pid()
    assert pid is not None
    down(mirrored.home)
    assert not _alive(pid)
    assert not (mirrored.home / "platform" / "gateway" / "relay.json").exists()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- refused when applied (no process is started) ----------------------------------------------


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": []}}],
            r"spec.rules\[0\].filters\[0\].type 'RequestHeaderModifier' is not supported by the "
            r"local gateway \(RequestMirror only\)",
        ),
        (
            [mirror(percent=10), mirror("tiny-llama-canary", percent=10)],
            r"spec.rules\[0\].filters\[1\]: the local gateway mirrors to one backend per rule",
        ),
        ([{"type": "RequestMirror"}], r"filters\[0\].requestMirror is missing"),
        ([mirror(percent=101)], r"filters\[0\].requestMirror.percent is 101: use a whole number"),
        (
            [mirror(percent=10, fraction={"numerator": 1, "denominator": 10})],
            r"filters\[0\].requestMirror: give percent or fraction, not both",
        ),
        (
            [mirror(fraction={"numerator": 3, "denominator": 2})],
            r"filters\[0\].requestMirror.fraction is .*0 <= N <= D",
        ),
        (
            [
                {
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": {"kind": "Pod", "name": "p", "port": 1}},
                }
            ],
            r"filters\[0\].requestMirror.backendRef.kind 'Pod' is not supported",
        ),
    ],
)
def test_unsupported_filters_are_refused_naming_the_field(
    tmp_path: Path, filters: list[dict[str, Any]], message: str
) -> None:
    platform = LocalPlatform(tmp_path / ".llmflow", NAMESPACE)
    try:
        with pytest.raises(RunError, match=message):
            platform.act("apply", route(filters))
        assert platform.get("HTTPRoute", NAMESPACE, "tiny-llama") is None
    finally:
        platform.close()


# --- the nginx config and the relay on their own -------------------------------------------


def _services(mirror_servers: list[str]) -> dict[tuple[str, str], ServiceEndpoints]:
    def svc(name: str, servers: list[str]) -> ServiceEndpoints:
        endpoints = [Endpoint(s, f"{name}-pod", NAMESPACE, {}, "vllm") for s in servers]
        return ServiceEndpoints(NAMESPACE, name, {}, [ServicePort("http", 8000, "http", endpoints)])

    return {
        (NAMESPACE, "tiny-llama-stable"): svc("tiny-llama-stable", ["127.0.0.1:4001"]),
        (NAMESPACE, "tiny-llama-canary"): svc("tiny-llama-canary", ["127.0.0.1:4002"]),
        (NAMESPACE, "tiny-llama-shadow"): svc("tiny-llama-shadow", mirror_servers),
    }


def _render(filters: list[dict[str, Any]], mirror_servers: list[str], **weights: int) -> str:
    obj = route(filters, **weights)
    obj["metadata"]["namespace"] = NAMESPACE
    gateway = LocalGateway(Path("/nonexistent"))
    services = _services(mirror_servers)
    return gateway.render([obj], services, {f"{NAMESPACE}/llmflow-gateway": 40000}, 40001)


def test_the_gateway_starts_under_a_relative_platform_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`llmflow run` and the demo default to the relative root `.llmflow`."""
    require_binaries()
    monkeypatch.chdir(tmp_path)
    obj = route([])
    obj["metadata"]["namespace"] = NAMESPACE
    gateway = LocalGateway(Path(".llmflow") / "platform")
    try:
        gateway.apply([obj], _services([]))
        assert gateway.pid() is not None
        (url,) = gateway.urls().values()
        with pytest.raises(urllib.error.HTTPError) as refused:  # the backends are not there
            urllib.request.urlopen(url + "/v1/models", timeout=10)
        assert refused.value.code in (502, 503)
    finally:
        gateway.stop()
    assert gateway.pid() is None


def test_config_mirrors_through_the_relay_with_an_independent_key() -> None:
    conf = _render([mirror(percent=30)], ["127.0.0.1:4003", "127.0.0.1:4004"], stable=90, canary=10)
    assert 'split_clients "${request_id}" $route_0_0' in conf
    assert 'split_clients "mirror${request_id}" $llmflow_mirror_route_0_0' in conf
    assert "30.00% 1;" in conf
    assert "mirror /_llmflow_mirror/route_0_0; mirror_request_body on;" in conf
    assert 'X-Llmflow-Mirror-To "127.0.0.1:4003,127.0.0.1:4004"' in conf
    assert "upstream llmflow_mirror_relay {\n    server 127.0.0.1:40001" in conf
    assert "location = /_llmflow_mirror/route_0_0 { internal; " in conf
    # all requests: no split for the mirror
    conf = _render([mirror()], ["127.0.0.1:4003"])
    assert "mirror /_llmflow_mirror/route_0_0;" in conf and "llmflow_mirror_route" not in conf


@pytest.mark.parametrize(
    ("filters", "servers"),
    [
        ([mirror(percent=0)], ["127.0.0.1:4003"]),
        ([mirror(fraction={"numerator": 0, "denominator": 7})], ["127.0.0.1:4003"]),
        ([mirror(percent=50)], []),  # no ready endpoint
        ([mirror("tiny-llama-nothing", percent=50)], ["127.0.0.1:4003"]),
    ],
)
def test_config_without_an_active_mirror_mirrors_nothing(
    filters: list[dict[str, Any]], servers: list[str]
) -> None:
    conf = _render(filters, servers)
    assert "mirror " not in conf and "llmflow_mirror_relay" not in conf


@pytest.mark.parametrize(
    ("percent", "share"),
    [
        (100, None),
        (99.999, None),
        (50, "50.00%"),
        (100 / 3, "33.33%"),
        (12.5, "12.50%"),
        (0.001, "0.01%"),
    ],
)
def test_nginx_share_to_a_hundredth_of_a_percent(percent: float, share: str | None) -> None:
    assert nginx_share(percent) == share


def test_relay_replays_whole_requests_and_drops_beyond_its_bound(tmp_path: Path) -> None:
    """The relay alone: answers at once, replays, reads streamed answers to the end, drops."""
    record = tmp_path / "target.jsonl"
    target_port, relay_port = free_port(), free_port()
    env = {
        **os.environ,
        "STAND_IN_ROLE": "target",
        "STAND_IN_RECORD": str(record),
        "STAND_IN_CONTROL": str(tmp_path / "control.json"),
    }
    (tmp_path / "control.json").write_text(json.dumps({"target": {"sleep": 1}}))
    target = subprocess.Popen([sys.executable, str(STAND_IN), "--port", str(target_port)], env=env)
    relay = subprocess.Popen(
        [sys.executable, str(RELAY_SCRIPT), "--port", str(relay_port), "--max-in-flight", "2"]
    )
    try:
        wait_for(lambda: _up(relay_port, "/-/ready") and _up(target_port, "/health"), 20, "up")
        conn = http.client.HTTPConnection("127.0.0.1", relay_port, timeout=10)
        to = {"X-Llmflow-Mirror-To": f"127.0.0.1:{target_port}", "Connection": "keep-alive"}
        began = time.monotonic()
        statuses = []
        for path in ("/stream", "/v1/completions", "/v1/completions"):
            conn.request("POST", path, body=json.dumps(BODY), headers={**HEADERS, **to})
            response = conn.getresponse()
            response.read()
            statuses.append((response.status, response.getheader("X-Llmflow-Mirror")))
        answered = time.monotonic() - began
        # the third copy found two in flight (the target sleeps 1 s): dropped, still 204
        assert statuses == [(204, None), (204, None), (204, "dropped")]
        assert answered < NOT_HELD_S

        def settled(forwarded: int, failed: int) -> dict[str, Any] | None:
            stats: dict[str, Any] = json.loads(_get(relay_port, "/-/stats"))
            now = (stats["in_flight"], stats["forwarded"], stats["failed"])
            return stats if now == (0, forwarded, failed) else None

        wait_for(lambda: settled(2, 0), 10, "the copies to be replayed", interval=0.1)
        conn.request("POST", "/v1/x", body=b"{}", headers={"X-Llmflow-Mirror-To": "10.0.0.1:80"})
        response = conn.getresponse()
        assert response.status == 400 and b"loopback" in response.read()
        # nothing listens: refused, counted as failed
        closed = {"X-Llmflow-Mirror-To": f"127.0.0.1:{free_port()}"}
        conn.request("POST", "/v1/x", body=b"{}", headers=closed)
        assert conn.getresponse().status == 204
        conn.close()
        stats = wait_for(lambda: settled(2, 1), 10, "the refused copy", interval=0.1)
        assert stats["dropped"] == 1 and stats["refused"] == 1 and stats["received"] == 5
        lines = [json.loads(line) for line in record.read_text().splitlines()]
        copies = [r for r in lines if "event" not in r]
        assert sorted(c["path"] for c in copies) == ["/stream", "/v1/completions"]
        for copy in copies:
            assert (copy["method"], json.loads(copy["body"])) == ("POST", BODY)
            assert copy["content_type"] == HEADERS["Content-Type"]
            assert copy["authorization"] == HEADERS["Authorization"]
        # the streamed answer was read to its end: the target wrote it all
        assert [r["event"] for r in lines if "event" in r] == ["stream-done"]
    finally:
        for proc in (relay, target):
            proc.terminate()
            proc.wait(timeout=10)


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def _up(port: int, path: str) -> bool:
    try:
        _get(port, path)
    except OSError:
        return False
    return True

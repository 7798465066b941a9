"""The local gateway: one nginx serving every HTTPRoute, one port per Gateway named in parentRefs.

Each route rule becomes an nginx `location` that proxies to a `split_clients` choice over one
upstream per backendRef Service (its ready endpoints), with the backendRefs' weights as
percentages of their sum. A backend with weight 0, or with no ready endpoint, gets no traffic
(its share goes to the others); a rule with no backend left answers 503. Responses stream
(`proxy_buffering off`, HTTP/1.1 to upstreams, long read timeouts). The config is regenerated
whenever routes or endpoints change and nginx reloads it gracefully (SIGHUP: old workers finish
their in-flight requests; clients get a connection per request, so no idle keep-alive
connection is cut under a client about to reuse it), so a weight change drops no request. A
rule's RequestMirror filter copies a share of its requests through the mirror relay, which
nginx never waits for (see `_mirror`); the relay is started with the first mirror and stopped
with nginx.

Files under `<home>/platform/gateway/`: nginx.conf, nginx.pid, error.log, access.log (each
line has `upstream=<address>`), state.json (the port of each Gateway, kept across runs while
nginx lives), tmp/, and the relay's relay.json and relay.log.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds import _pods
from workflows.local.kinds._detached import Detached
from workflows.local.kinds._endpoints import ServiceEndpoints
from workflows.local.kinds._mirror import (
    RELAY_UPSTREAM,
    MirrorRelay,
    mirror_config,
    resolve_mirror,
)
from workflows.local.kinds._state import write_json, write_text
from workflows.local.s3 import free_port

#: Where nginx is looked for when it is not on PATH (Debian installs it in /usr/sbin).
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> str:
    """The nginx binary (env `LLMFLOW_NGINX`, PATH, /usr/sbin).

    Raises:
        RunError: nginx is not installed.
    """
    found = os.environ.get("LLMFLOW_NGINX") or shutil.which("nginx")
    if not found:
        found = next((c for c in NGINX_CANDIDATES if os.access(c, os.X_OK)), None)
    if not found:
        raise RunError(
            "HTTPRoute needs nginx for the local gateway, and it is not installed; run "
            "`make setup` (apt-get install nginx) or set LLMFLOW_NGINX to its path"
        )
    return found


@dataclass
class Backend:
    """One backendRef of a rule, resolved."""

    service: str
    namespace: str
    weight: int
    upstream: str
    servers: list[str]


def resolve_backends(
    route: dict[str, Any], rule: dict[str, Any], services: dict[tuple[str, str], ServiceEndpoints]
) -> tuple[list[Backend], list[str]]:
    """A rule's backends with their endpoints, and the refs that name no Service."""
    namespace = route["metadata"]["namespace"]
    backends, missing = [], []
    for ref in rule.get("backendRefs") or []:
        ns = ref.get("namespace") or namespace
        svc = services.get((ns, ref.get("name", "")))
        kind = ref.get("kind") or "Service"
        if kind != "Service" or svc is None:
            missing.append(f"{ns}/{ref.get('name')}")
            continue
        port = svc.port(ref.get("port"))
        servers = [e.address for e in port.endpoints] if port else []
        name = f"{ns}__{svc.name}__{port.port if port else 0}"
        upstream = re.sub(r"[^A-Za-z0-9_]", "_", name)
        weight = int(ref.get("weight", 1))
        backends.append(Backend(svc.name, ns, weight, upstream, servers))
    return backends, missing


def split(backends: list[Backend]) -> list[tuple[str, Backend]]:
    """`split_clients` lines: percentages of the live backends' weights; the last takes `*`."""
    live = [b for b in backends if b.weight > 0 and b.servers]
    total = sum(b.weight for b in live)
    out = []
    for i, backend in enumerate(live):
        if i == len(live) - 1:
            out.append(("*", backend))
        else:
            pct = math.floor(backend.weight / total * 10000) / 100
            if pct > 0:
                out.append((f"{pct:.2f}%", backend))
    return out


class LocalGateway:
    """The nginx process and its config under `<platform>/gateway`."""

    def __init__(self, root: Path) -> None:
        # nginx resolves a relative -c and -e against its -p prefix: with the default root
        # (`.llmflow`) every path would name a folder inside itself.
        self.folder = (root / "gateway").absolute()
        self.conf = self.folder / "nginx.conf"
        self.pid_file = self.folder / "nginx.pid"
        self.state_file = self.folder / "state.json"
        self.access_log = self.folder / "access.log"
        self.error_log = self.folder / "error.log"
        self.relay = MirrorRelay(self.folder)
        # nginx daemonises itself and is stopped with SIGQUIT: only its state is shared.
        self._nginx = Detached(self.state_file, self.error_log, "nginx", grace=5.0)

    # --- state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Ports by Gateway (`ns/name`), and nginx's pid and start ticks."""
        return self._nginx.state()

    def pid(self) -> int | None:
        """The nginx master's pid when it runs, else None."""
        return self._nginx.pid()

    def urls(self) -> dict[str, str]:
        """`http://127.0.0.1:PORT` of each Gateway (`ns/name`) while nginx runs."""
        if self.pid() is None:
            return {}
        ports = self.state().get("ports") or {}
        return {key: f"http://127.0.0.1:{port}" for key, port in sorted(ports.items())}

    # --- config ------------------------------------------------------------------------

    def render(
        self,
        routes: list[dict[str, Any]],
        services: dict[tuple[str, str], ServiceEndpoints],
        ports: dict[str, int],
        relay_port: int | None = None,
    ) -> str:
        """The nginx config for the routes, with one server per Gateway port and hostnames.

        Mirror filters are rendered only with the relay's port (`relay_port`): without a
        relay, rules are served unmirrored.
        """
        upstreams: dict[str, list[str]] = {}
        splits: list[str] = []
        # (gateway key, hostnames) -> location lines, first route to claim a path keeps it
        servers: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        for gateway in ports:
            servers[(gateway, ())] = {}
        for r_index, route in enumerate(routes):
            meta, spec = route["metadata"], route.get("spec") or {}
            hosts = tuple(sorted(spec.get("hostnames") or []))
            for ref in spec.get("parentRefs") or []:
                gateway = f"{ref.get('namespace') or meta['namespace']}/{ref.get('name')}"
                locations = servers.setdefault((gateway, hosts), {})
                for k, rule in enumerate(spec.get("rules") or []):
                    backends, _ = resolve_backends(route, rule, services)
                    for backend in backends:
                        if backend.servers:
                            upstreams[backend.upstream] = backend.servers
                    name = f"route_{r_index}_{k}"
                    target = self._target(backends, name, splits)
                    mirror, _ = resolve_mirror(route, rule, services)
                    if mirror and mirror.active and relay_port and target != "return 503;":
                        upstreams[RELAY_UPSTREAM] = [f"127.0.0.1:{relay_port}"]
                        directives, location, body = mirror_config(mirror, name, splits)
                        locations.setdefault(location, body)
                        target = f"{directives} {target}"
                    for match in rule.get("matches") or [{}]:
                        path = match.get("path") or {}
                        for location in _locations(path.get("type"), path.get("value", "/")):
                            locations.setdefault(location, target)
        lines = [
            "# Generated by llmflow (workflows/local/kinds/_nginx.py); do not edit.",
            "worker_processes 1;",
            f"pid {self.pid_file};",
            f"error_log {self.error_log} notice;",
            "events { worker_connections 1024; }",
            "http {",
            '  log_format llmflow \'$time_iso8601 $server_port "$request" $status '
            "upstream=$upstream_addr rt=$request_time id=$request_id';",
            f"  access_log {self.access_log} llmflow;",
        ]
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            lines.append(f"  {temp}_temp_path {self.folder / 'tmp' / temp};")
        lines += [
            "  client_max_body_size 64m;",
            # A connection per client request: a reload (every weight or endpoint change)
            # closes idle keep-alive connections at once, and a client sending its next
            # request on one at that moment sees it cut (measured: 1 request in 973 of a
            # streaming client during a shadow). Locally a connection costs nothing.
            "  keepalive_timeout 0;",
            "  proxy_http_version 1.1;",
            '  proxy_set_header Connection "";',
            "  proxy_set_header Host $http_host;",
            "  proxy_set_header X-Request-Id $request_id;",
            "  proxy_buffering off;",
            "  proxy_request_buffering off;",
            "  proxy_connect_timeout 5s;",
            "  proxy_read_timeout 3600s;",
            "  proxy_send_timeout 3600s;",
        ]
        for name, addresses in sorted(upstreams.items()):
            lines.append(f"  upstream {name} {{")
            lines += [f"    server {a} max_fails=0;" for a in addresses]
            lines += ["    keepalive 16;", "  }"]
        lines += splits
        for (gateway, hosts), locations in servers.items():
            if gateway not in ports:
                continue
            default = " default_server" if not hosts else ""
            lines += [
                "  server {",
                f"    listen 127.0.0.1:{ports[gateway]}{default};",
                f"    server_name {' '.join(hosts) if hosts else '_'};",
            ]
            for location, target in sorted(locations.items()):
                lines.append(f"    location {location} {{ {target} }}")
            if "/" not in locations:
                lines.append("    location / { return 404; }")
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _target(backends: list[Backend], var: str, splits: list[str]) -> str:
        choices = split(backends)
        if not choices:
            return "return 503;"
        if len(choices) == 1:
            return f"proxy_pass http://{choices[0][1].upstream};"
        splits.append(f'  split_clients "${{request_id}}" ${var} {{')
        splits += [f"    {share} {backend.upstream};" for share, backend in choices]
        splits.append("  }")
        return f"proxy_pass http://${var};"

    # --- process -----------------------------------------------------------------------

    def apply(
        self, routes: list[dict[str, Any]], services: dict[tuple[str, str], ServiceEndpoints]
    ) -> None:
        """Make nginx serve the routes: start it, or reload it when its config changed."""
        if not routes and self.pid() is None:
            return
        state = self.state()
        running = self.pid() is not None
        ports: dict[str, int] = dict(state.get("ports") or {})
        for route in routes:
            for ref in (route.get("spec") or {}).get("parentRefs") or []:
                key = f"{ref.get('namespace') or route['metadata']['namespace']}/{ref.get('name')}"
                if key not in ports or (not running and not _pods.port_free(ports[key])):
                    ports[key] = free_port()
        if not running:
            for key, port in list(ports.items()):
                if not _pods.port_free(port):
                    ports[key] = free_port()
        relay_port = self.relay.ensure() if mirrors_wanted(routes, services) else None
        changed = write_text(self.conf, self.render(routes, services, ports, relay_port))
        state["ports"] = ports
        write_json(self.state_file, state)
        if not running:
            self._start()
        elif changed:
            self._reload()

    def _command(self, *extra: str) -> list[str]:
        return [
            find_nginx(),
            "-p",
            str(self.folder),
            "-c",
            str(self.conf),
            "-e",
            str(self.error_log),
            *extra,
        ]

    def _check(self) -> None:
        result = subprocess.run(self._command("-t", "-q"), capture_output=True, text=True)
        if result.returncode != 0:
            raise RunError(
                f"the local gateway's nginx config {self.conf} is invalid:\n{result.stderr.strip()}"
            )

    def _start(self) -> None:
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / "tmp" / temp).mkdir(parents=True, exist_ok=True)
        self._check()
        self.pid_file.unlink(missing_ok=True)
        result = subprocess.run(
            self._command(), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise RunError(f"nginx did not start: {result.stderr.strip()}; see {self.error_log}")
        deadline = time.monotonic() + 5
        pid = None
        while time.monotonic() < deadline and pid is None:
            try:
                pid = int(self.pid_file.read_text().strip())
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)
        if pid is None:
            raise RunError(f"nginx started but wrote no pid file; see {self.error_log}")
        state = self.state()
        state.update(pid=pid, ticks=_pods.start_ticks(pid))
        write_json(self.state_file, state)

    def _reload(self) -> None:
        """SIGHUP: nginx starts workers with the new config; old ones finish their requests."""
        pid = self.pid()
        if pid is None:
            return
        self._check()
        before = _children(pid)
        os.kill(pid, signal.SIGHUP)
        # Done when new workers run and the old ones stopped accepting (their title says so):
        # a request sent after this returns sees the new config.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            now = _children(pid)
            if now - before and all(_shutting_down(w) for w in before & now):
                break
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop nginx (graceful quit, then kill) and the mirror relay, and forget their ports."""
        state = self.state()
        pid = state.get("pid")
        if pid and _pods.alive(pid, state.get("ticks")):
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _pods.alive(pid, state.get("ticks")):
                time.sleep(0.05)
            if _pods.alive(pid, state.get("ticks")):
                for child in _children(pid):
                    _kill(child)
                _kill(pid)
        self.relay.stop()
        self.state_file.unlink(missing_ok=True)


def mirrors_wanted(
    routes: list[dict[str, Any]], services: dict[tuple[str, str], ServiceEndpoints]
) -> bool:
    """Whether any rule of the routes mirrors requests now (so the relay must run)."""
    for route in routes:
        for rule in (route.get("spec") or {}).get("rules") or []:
            mirror, _ = resolve_mirror(route, rule, services)
            if mirror is not None and mirror.active:
                return True
    return False


def _locations(kind: str | None, value: str) -> list[str]:
    """Nginx locations for an HTTPRoute path match (PathPrefix matches whole path segments)."""
    if kind == "Exact":
        return [f"= {value}"]
    if kind == "RegularExpression":
        return [f"~ {value}"]
    prefix = value.rstrip("/")
    if not prefix:
        return ["/"]
    return [f"= {prefix}", f"^~ {prefix}/"]


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _shutting_down(pid: int) -> bool:
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

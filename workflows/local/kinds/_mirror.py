"""RequestMirror on the local gateway: the rule's mirror resolved, its nginx lines, the relay.

A rule's `RequestMirror` filter (Gateway API) names a Service and a share of the requests
(`percent`, or `fraction` numerator/denominator; neither: all). nginx's `mirror` directive
copies each request of the rule's locations to an internal location, where a `split_clients`
on `mirror${request_id}` keeps the share (to 0.01%, nginx's resolution) and answers the rest
with an empty 204 at once. Its key is salted so that it does not follow the weight split's
`${request_id}` key: with the same key, the requests mirrored would be those of the first
backend, not a sample of all. The copies kept go to the relay (`_relay.py`), never straight
to the target: nginx holds a client's connection until its mirror subrequests end (see
`_relay`), and the relay ends them at once. The relay sends each copy to one ready endpoint of
the mirror Service, named by nginx in a header.

A mirror Service that does not exist makes the route's ResolvedRefs False (BackendNotFound)
and mirrors nothing, as the Gateway API asks; one with no ready endpoint, or a share of 0,
mirrors nothing either. Files under `<home>/platform/gateway/`: relay.json (pid, start
ticks, port; kept across runs while the relay lives), relay.log.
"""

from __future__ import annotations

import json
import math
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds._detached import Detached
from workflows.local.kinds._endpoints import ServiceEndpoints
from workflows.local.kinds._relay import TARGET_HEADER

#: The relay program, run by path with this Python (it imports nothing of llmflow).
RELAY_SCRIPT = Path(__file__).with_name("_relay.py")

#: Copies the relay sends at once; more are dropped and counted. A tiny model on one core
#: answers a few requests at a time, a GPU server a few hundred; 64 keeps a slow candidate's
#: backlog (and the relay's memory) bounded while a shadow stage still sees most requests.
MAX_IN_FLIGHT = 64

#: The name of the relay's upstream in nginx.conf (backend upstreams are `<ns>__<svc>__<port>`).
RELAY_UPSTREAM = "llmflow_mirror_relay"

#: Where nginx's internal mirror locations live; `internal` keeps clients out of them.
MIRROR_PREFIX = "/_llmflow_mirror/"


@dataclass
class MirrorTarget:
    """A rule's RequestMirror, resolved: the Service's ready endpoints and the share in %."""

    service: str
    namespace: str
    servers: list[str]
    percent: float

    @property
    def active(self) -> bool:
        """Whether any request is mirrored (an endpoint is ready, the share is above 0)."""
        return bool(self.servers) and self.percent > 0


def check_filters(where: str, rule: dict[str, Any]) -> None:
    """Refuse filters the local gateway cannot honour, naming the field and the fix.

    Raises:
        RunError: a filter other than RequestMirror, a second RequestMirror on the rule, or a
            requestMirror whose backendRef or share is malformed.
    """
    mirrors = 0
    for i, flt in enumerate(rule.get("filters") or []):
        at = f"{where}.filters[{i}]"
        kind = flt.get("type") if isinstance(flt, dict) else None
        if kind != "RequestMirror":
            raise RunError(
                f"{at}.type {kind!r} is not supported by the local gateway (RequestMirror only)"
            )
        mirror = flt.get("requestMirror")
        if not isinstance(mirror, dict):
            raise RunError(
                f"{at}.requestMirror is missing: a RequestMirror filter needs "
                "requestMirror.backendRef (and percent or fraction)"
            )
        mirrors += 1
        if mirrors > 1:
            raise RunError(
                f"{at}: the local gateway mirrors to one backend per rule; keep one "
                "RequestMirror filter in the rule"
            )
        _check_mirror(f"{at}.requestMirror", mirror)


def _check_mirror(at: str, mirror: dict[str, Any]) -> None:
    ref = mirror.get("backendRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        raise RunError(f"{at}.backendRef.name is missing: name the Service to mirror to")
    if (ref.get("kind") or "Service") != "Service" or ref.get("group"):
        raise RunError(
            f"{at}.backendRef.kind {ref.get('kind')!r} is not supported by the local gateway "
            "(core Services only)"
        )
    if "percent" in mirror and "fraction" in mirror:
        raise RunError(f"{at}: give percent or fraction, not both (Gateway API allows one)")
    if "percent" in mirror:
        percent = mirror["percent"]
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise RunError(f"{at}.percent is {percent!r}: use a whole number 0..100")
    if "fraction" in mirror:
        fraction = mirror["fraction"]
        numerator = fraction.get("numerator") if isinstance(fraction, dict) else None
        denominator = fraction.get("denominator", 100) if isinstance(fraction, dict) else None
        if not (
            isinstance(numerator, int)
            and isinstance(denominator, int)
            and 0 <= numerator <= denominator
            and denominator >= 1
        ):
            raise RunError(
                f"{at}.fraction is {fraction!r}: use {{numerator: N, denominator: D}} with "
                "0 <= N <= D and D >= 1"
            )


def share_percent(mirror: dict[str, Any]) -> float:
    """The share of requests a requestMirror copies, in percent (neither field: 100)."""
    if "percent" in mirror:
        return float(mirror["percent"])
    if "fraction" in mirror:
        fraction = mirror["fraction"]
        return 100.0 * int(fraction["numerator"]) / int(fraction.get("denominator", 100))
    return 100.0


def resolve_mirror(
    route: dict[str, Any], rule: dict[str, Any], services: dict[tuple[str, str], ServiceEndpoints]
) -> tuple[MirrorTarget | None, list[str]]:
    """A rule's mirror with its endpoints (None without one), and the ref that names no Service."""
    namespace = route["metadata"]["namespace"]
    for flt in rule.get("filters") or []:
        if flt.get("type") != "RequestMirror":
            continue
        mirror = flt.get("requestMirror") or {}
        ref = mirror.get("backendRef") or {}
        ns = ref.get("namespace") or namespace
        svc = services.get((ns, ref.get("name", "")))
        if (ref.get("kind") or "Service") != "Service" or svc is None:
            return None, [f"{ns}/{ref.get('name')}"]
        port = svc.port(ref.get("port"))
        servers = [e.address for e in port.endpoints] if port else []
        return MirrorTarget(svc.name, ns, servers, share_percent(mirror)), []
    return None, []


def nginx_share(percent: float) -> str | None:
    """The `split_clients` share of a mirror, to 0.01% and at least that; None for all."""
    hundredths = max(math.floor(percent * 100 + 0.5), 1)
    if hundredths >= 100 * 100:
        return None
    return f"{hundredths / 100:.2f}%"


def mirror_config(target: MirrorTarget, name: str, splits: list[str]) -> tuple[str, str, str]:
    """The nginx lines of an active mirror: (directives for the rule's locations, location, body).

    `splits` gets the `split_clients` block when only a share is mirrored.
    """
    location = f"= {MIRROR_PREFIX}{name}"
    skip = ""
    share = nginx_share(target.percent)
    if share is not None:
        var = f"$llmflow_mirror_{name}"
        splits += [f'  split_clients "mirror${{request_id}}" {var} {{', f"    {share} 1;"]
        splits += ['    * "";', "  }"]
        skip = f'if ({var} = "") {{ return 204; }} '
    body = (
        f"internal; {skip}"
        "proxy_set_header Host $http_host; "
        'proxy_set_header Connection ""; '
        # The copy's own id: a vLLM that gets both the request and its copy (a mirror to a
        # weighted backend) would refuse a request id already running.
        "proxy_set_header X-Request-Id $request_id-mirror; "
        f'proxy_set_header {TARGET_HEADER} "{",".join(target.servers)}"; '
        # The relay answers at once; these only bound a relay that hangs.
        "proxy_connect_timeout 1s; proxy_send_timeout 10s; proxy_read_timeout 10s; "
        f"proxy_pass http://{RELAY_UPSTREAM}$request_uri;"
    )
    directives = f"mirror {MIRROR_PREFIX}{name}; mirror_request_body on;"
    return directives, location, body


class MirrorRelay(Detached):
    """The relay process under `<platform>/gateway`: started on demand, kept across runs."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            folder / "relay.json", folder / "relay.log", "the gateway's mirror relay", grace=5.0
        )
        self.folder = folder

    def ensure(self) -> int:
        """The port of the running relay, started first when it is not running.

        Raises:
            RunError: the relay exited at start or did not answer within 10 s (its log's tail).
        """
        port = self.port()
        if port is not None:
            return port
        port = self.next_port()
        command = [
            sys.executable,
            str(RELAY_SCRIPT),
            *("--port", str(port), "--max-in-flight", str(MAX_IN_FLIGHT)),
        ]
        self.start(command, port, self.folder, ready_within=10)
        return port

    def stats(self) -> dict[str, Any] | None:
        """The relay's counters (received, forwarded, failed, dropped, ...), None when down."""
        port = self.port()
        if port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/stats", timeout=2) as answer:
                stats: dict[str, Any] = json.loads(answer.read())
                return stats
        except (OSError, ValueError):
            return None

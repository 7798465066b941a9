"""How requests reach a model: one Service per track, one HTTPRoute splitting traffic by weight.

The canary is rolled out by re-applying the HTTPRoute with new weights (Gateway API
`backendRefs[].weight`), so no pod or Service changes between stages, and every Gateway API
implementation does the split the same way. A shadow stage adds a `RequestMirror` filter
(`Mirror`): a fraction of the requests is copied to a track whose answers are discarded, so a
candidate is measured on live traffic before any client sees its answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from kubernetes.client import V1ObjectMeta, V1Service, V1ServicePort, V1ServiceSpec

from serving.labels import (
    TRACKS,
    check_track,
    common_labels,
    model_labels,
    object_name,
    route_name,
    selector,
    serving_of,
)
from workflows.spec import ReleaseSpec
from workflows.training.pod import serialise

#: The Gateway API group and version of HTTPRoute (standard channel).
HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"

#: Largest weight Gateway API accepts for one backendRef.
MAX_WEIGHT = 1_000_000

#: Request timeout of the route. Gateways often default to 15 s, which cuts off a streamed
#: generation half-way; ten minutes covers a long answer at low throughput and still ends a
#: request to a hung backend. The backend timeout equals it (it may not exceed it).
REQUEST_TIMEOUT = "10m"

#: Largest denominator of a mirrored fraction. The filter's `fraction` fields are int32; a
#: million keeps every share a person would ask for exact (1/3, 1/8, 0.1%) and far inside them.
MAX_MIRROR_DENOMINATOR = 1_000_000


@dataclass(frozen=True)
class Mirror:
    """Copy a fraction of a route's requests to a track; its answers are discarded.

    Attributes:
        track: The track mirrored to ("stable" or "canary"): its Service gets the copies.
        fraction: The share of requests copied, 0 < fraction <= 1 (1: every request). Zero is
            refused rather than rendered as a filter that mirrors nothing: leave the mirror
            out to stop mirroring.

    Raises:
        ValueError: the track is unknown, or the fraction is not a number in (0, 1] (NaN
            included) or is below 1/1000000, naming the value and the fix.
    """

    track: str
    fraction: float

    def __post_init__(self) -> None:
        check_track(self.track)
        value = self.fraction
        if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
            raise ValueError(
                f"mirror fraction {value!r} is not a number: give a share in (0, 1], e.g. 0.1"
            )
        if not (math.isfinite(value) and 0 < value <= 1):
            raise ValueError(
                f"mirror fraction {value!r} is outside (0, 1]: give e.g. 0.1 for 10% of the "
                "requests, 1 for all; to stop mirroring, pass mirror=None"
            )
        if self.ratio == 0:
            raise ValueError(
                f"mirror fraction {value!r} is below 1/{MAX_MIRROR_DENOMINATOR}: give a larger "
                "share, or pass mirror=None to mirror nothing"
            )

    @property
    def ratio(self) -> Fraction:
        """The fraction as an exact ratio, denominator at most `MAX_MIRROR_DENOMINATOR`.

        A float such as 0.29 is not exactly 29/100 in binary; the closest ratio with a small
        denominator is what the caller meant.
        """
        return Fraction(self.fraction).limit_denominator(MAX_MIRROR_DENOMINATOR)

    def share(self) -> dict[str, Any]:
        """The filter's share field as Gateway API v1.6 (standard channel) expresses it.

        `percent: N` when the share is a whole percentage, else `fraction: {numerator,
        denominator}` (exact); never both, which the schema's CEL rule forbids.
        """
        ratio = self.ratio
        if (ratio * 100).denominator == 1:
            return {"percent": int(ratio * 100)}
        return {"fraction": {"numerator": ratio.numerator, "denominator": ratio.denominator}}


def build_service(spec: ReleaseSpec, track: str) -> dict[str, Any]:
    """The v1 ClusterIP Service in front of one track's pods.

    Its port is named "http" (the ServiceMonitor scrapes by that name) and targets the
    container's "http" port; its labels carry the model's name, so the ServiceMonitor selects
    the Services of both tracks.

    Raises:
        ValueError: the spec has no `serving` section, or the track is unknown.
    """
    serving = serving_of(spec)
    service = V1Service(
        api_version="v1",
        kind="Service",
        metadata=V1ObjectMeta(
            name=object_name(spec, track),
            namespace=spec.namespace,
            labels=common_labels(spec, track),
        ),
        spec=V1ServiceSpec(
            type="ClusterIP",
            selector=selector(spec, track),
            ports=[
                V1ServicePort(name="http", port=serving.port, target_port="http", protocol="TCP")
            ],
        ),
    )
    result: dict[str, Any] = serialise(service)
    return result


def build_httproute(
    spec: ReleaseSpec, weights: dict[str, int], mirror: Mirror | None = None
) -> dict[str, Any]:
    """The model's HTTPRoute, sending each track its weight of the traffic.

    Args:
        spec: The release spec; `serving.gateway` names the parent Gateway and hostnames.
        weights: Weight by track ("stable", "canary"), e.g. `{"stable": 90, "canary": 10}`.
            A weight of 0 keeps the track's backendRef with no traffic (Gateway API allows
            it), so a stage can be undone by changing numbers only. Stable comes first.
        mirror: Also copy a share of the requests to a track's Service (a `RequestMirror`
            filter on the rule); clients still get only the weighted backends' answers.
            None (the default): no filter, the route as without mirroring.

    Raises:
        ValueError: the spec has no `serving` section, a track is unknown, there is no
            track, or a weight is outside 0..1000000.
    """
    serving = serving_of(spec)
    if not weights:
        raise ValueError("weights is empty: give at least one track, e.g. {'stable': 100}")
    for track, weight in weights.items():
        check_track(track)
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of track {track!r} is {weight}: use 0..{MAX_WEIGHT}")
    backend_refs = [
        {"name": object_name(spec, track), "port": serving.port, "weight": weights[track]}
        for track in TRACKS
        if track in weights
    ]
    gateway = serving.gateway
    parent: dict[str, Any] = {"name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    route_spec: dict[str, Any] = {"parentRefs": [parent]}
    if gateway.hostnames:
        route_spec["hostnames"] = list(gateway.hostnames)
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": backend_refs,
    }
    if mirror is not None:
        rule["filters"] = [mirror_filter(spec, mirror)]
    rule["timeouts"] = {"request": REQUEST_TIMEOUT, "backendRequest": REQUEST_TIMEOUT}
    route_spec["rules"] = [rule]
    return {
        "apiVersion": HTTPROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(spec),
            "namespace": spec.namespace,
            "labels": model_labels(spec),
        },
        "spec": route_spec,
    }


def mirror_filter(spec: ReleaseSpec, mirror: Mirror) -> dict[str, Any]:
    """A rule's `RequestMirror` filter: the track's Service and port, and the share copied.

    Raises:
        ValueError: the spec has no `serving` section.
    """
    serving = serving_of(spec)
    backend = {"name": object_name(spec, mirror.track), "port": serving.port}
    return {"type": "RequestMirror", "requestMirror": {"backendRef": backend, **mirror.share()}}

"""What keeps a served model observed and available: ServiceMonitor, PodDisruptionBudget, HPA.

The canary judge reads vLLM's metrics from Prometheus by version and track, so scraping is
part of serving, not an add-on. The budget and the autoscaler are built per track; the deploy
pipeline gives them to stable, the version users are served by (a canary lives minutes).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import (
    V1LabelSelector,
    V1ObjectMeta,
    V1PodDisruptionBudget,
    V1PodDisruptionBudgetSpec,
    V2CrossVersionObjectReference,
    V2HorizontalPodAutoscaler,
    V2HorizontalPodAutoscalerBehavior,
    V2HorizontalPodAutoscalerSpec,
    V2HPAScalingPolicy,
    V2HPAScalingRules,
    V2MetricIdentifier,
    V2MetricSpec,
    V2MetricTarget,
    V2PodsMetricSource,
)

from serving.labels import (
    NAME_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
    common_labels,
    model_labels,
    object_name,
    selector,
    serving_of,
)
from workflows.spec import ReleaseSpec
from workflows.training.pod import serialise

#: The prometheus-operator group and version of ServiceMonitor.
SERVICEMONITOR_API_VERSION = "monitoring.coreos.com/v1"

#: vLLM's queue length as the Prometheus adapter exposes it to the HPA (custom metrics API
#: names cannot hold the `:` of `vllm:num_requests_waiting`).
QUEUE_METRIC = "vllm_num_requests_waiting"

#: How long the HPA waits, after load drops, before removing pods: a vLLM pod takes minutes
#: to load a model, so a short dip must not throw one away.
SCALE_DOWN_WINDOW_SECONDS = 600

#: At most one pod removed per this many seconds when scaling down.
SCALE_DOWN_PERIOD_SECONDS = 120


def build_servicemonitor(spec: ReleaseSpec) -> dict[str, Any]:
    """The ServiceMonitor that has Prometheus scrape vLLM's `/metrics` on both tracks.

    It selects the Services by the model's name only, so stable and canary are scraped
    alike; `podTargetLabels` copies each pod's version and track onto every series, which is
    what the canary analysis groups by.

    Raises:
        ValueError: the spec has no `serving` section.
    """
    serving = serving_of(spec)
    return {
        "apiVersion": SERVICEMONITOR_API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": {
            "name": f"{spec.model.name}-vllm",
            "namespace": spec.namespace,
            "labels": model_labels(spec),
        },
        "spec": {
            "selector": {"matchLabels": {NAME_LABEL: spec.model.name}},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": serving.scrape_interval}
            ],
            "podTargetLabels": [VERSION_LABEL, TRACK_LABEL],
        },
    }


def build_pdb(spec: ReleaseSpec, track: str) -> dict[str, Any]:
    """The policy/v1 PodDisruptionBudget of one track: `maxUnavailable: 1`, whatever the size.

    With several replicas, node drains and upgrades take one pod at a time and the others keep
    serving. With one replica, `minAvailable: 1` would block every drain of its node forever;
    `maxUnavailable: 1` lets the drain proceed (a short outage, which a single replica cannot
    avoid). Unlike `minAvailable: N-1`, it stays right when the HPA changes the count.
    `unhealthyPodEvictionPolicy: AlwaysAllow` lets a drain evict pods that are not ready (still
    loading, crash-looping) even when the budget is spent: they serve nothing anyway.

    Raises:
        ValueError: the spec has no `serving` section, or the track is unknown.
    """
    serving_of(spec)
    pdb = V1PodDisruptionBudget(
        api_version="policy/v1",
        kind="PodDisruptionBudget",
        metadata=V1ObjectMeta(
            name=object_name(spec, track),
            namespace=spec.namespace,
            labels=common_labels(spec, track),
        ),
        spec=V1PodDisruptionBudgetSpec(
            max_unavailable=1,
            selector=V1LabelSelector(match_labels=selector(spec, track)),
            unhealthy_pod_eviction_policy="AlwaysAllow",
        ),
    )
    result: dict[str, Any] = serialise(pdb)
    return result


def build_hpa(spec: ReleaseSpec, track: str) -> dict[str, Any] | None:
    """The autoscaling/v2 HorizontalPodAutoscaler of one track, or None without `autoscale`.

    It scales the track's Deployment on `vllm_num_requests_waiting`, a Pods metric: the
    Prometheus adapter serves vLLM's `vllm:num_requests_waiting` gauge under that name (its
    rules rename `:` to `_`). The target is `autoscale.waiting_per_replica` requests queued per
    pod on average; queue length rises before latency does, and unlike GPU utilisation it
    does not sit at 100% under any load. Scaling down waits `SCALE_DOWN_WINDOW_SECONDS` and
    removes one pod at a time, because a new pod takes minutes to load the model.

    Raises:
        ValueError: the spec has no `serving` section, or the track is unknown.
    """
    autoscale = serving_of(spec).autoscale
    if autoscale is None:
        return None
    hpa = V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2",
        kind="HorizontalPodAutoscaler",
        metadata=V1ObjectMeta(
            name=object_name(spec, track),
            namespace=spec.namespace,
            labels=common_labels(spec, track),
        ),
        spec=V2HorizontalPodAutoscalerSpec(
            scale_target_ref=V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=object_name(spec, track)
            ),
            min_replicas=autoscale.min_replicas,
            max_replicas=autoscale.max_replicas,
            metrics=[
                V2MetricSpec(
                    type="Pods",
                    pods=V2PodsMetricSource(
                        metric=V2MetricIdentifier(name=QUEUE_METRIC),
                        target=V2MetricTarget(
                            type="AverageValue",
                            average_value=_quantity(autoscale.waiting_per_replica),
                        ),
                    ),
                )
            ],
            behavior=V2HorizontalPodAutoscalerBehavior(
                scale_down=V2HPAScalingRules(
                    stabilization_window_seconds=SCALE_DOWN_WINDOW_SECONDS,
                    policies=[
                        V2HPAScalingPolicy(
                            type="Pods", value=1, period_seconds=SCALE_DOWN_PERIOD_SECONDS
                        )
                    ],
                )
            ),
        ),
    )
    result: dict[str, Any] = serialise(hpa)
    return result


def _quantity(value: float) -> str:
    """A Kubernetes quantity for a number: `5` stays `5`, `2.5` becomes `2500m`."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"

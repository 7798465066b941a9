"""ServiceMonitor on one machine: a scrape job of one local Prometheus.

Every ServiceMonitor (monitoring.coreos.com/v1) becomes scrape jobs of one local Prometheus
(`_prometheus`), named as prometheus-operator names them (`serviceMonitor/<ns>/<name>/<i>`),
whose targets are the ready endpoints of the Services it selects, labelled with namespace,
service, pod, endpoint and each `podTargetLabels` label (so vLLM's series carry `version`
and `track`). Prometheus is reloaded when targets change; its URL is in the services map as
`prometheus-operated.monitoring` and shown by `llmflow local status`.
"""

from __future__ import annotations

from workflows.local.kinds.service import ServingStoredHandler
from workflows.local.platform import register


@register("ServiceMonitor")
class ServiceMonitorHandler(ServingStoredHandler):
    """ServiceMonitors scraped by the local Prometheus."""

    kind = "ServiceMonitor"

"""The local Prometheus: one process scraping what the ServiceMonitors select.

Each ServiceMonitor endpoint becomes a scrape job named as prometheus-operator names it
(`serviceMonitor/<ns>/<name>/<index>`), with static targets: the ready endpoints of the
selected Services' port, labelled as the operator's relabelling labels them (namespace,
service, pod, container, endpoint, job = the Service's name or its `jobLabel` value), plus the
`podTargetLabels` from each pod's labels (so series carry `version` and `track`) and the
`targetLabels` from the Service's. The config is reloaded (`POST /-/reload`) when targets
change. Files under `<home>/platform/prometheus/`: prometheus.yml, data/ (short retention),
prometheus.log, state.json (pid, start ticks, port).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from workflows.exceptions import RunError
from workflows.local.kinds import _pods
from workflows.local.kinds._detached import Detached
from workflows.local.kinds._endpoints import ServiceEndpoints
from workflows.local.kinds._state import matches, write_text
from workflows.local.leaves import duration_seconds

#: How long local series are kept: enough for a release's canary analysis.
RETENTION = "6h"


def find_prometheus() -> str:
    """The prometheus binary (env `LLMFLOW_PROMETHEUS`, PATH, /usr/bin).

    Raises:
        RunError: Prometheus is not installed.
    """
    found = os.environ.get("LLMFLOW_PROMETHEUS") or shutil.which("prometheus")
    if not found and os.access("/usr/bin/prometheus", os.X_OK):
        found = "/usr/bin/prometheus"
    if not found:
        raise RunError(
            "ServiceMonitor needs Prometheus for local scraping, and it is not installed; run "
            "`make setup` (apt-get install prometheus) or set LLMFLOW_PROMETHEUS to its path"
        )
    return found


def _label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_jobs(
    monitors: list[dict[str, Any]], services: dict[tuple[str, str], ServiceEndpoints]
) -> list[dict[str, Any]]:
    """Prometheus scrape configs for ServiceMonitors, as prometheus-operator would write them."""
    jobs = []
    for monitor in monitors:
        meta, spec = monitor["metadata"], monitor.get("spec") or {}
        ns_selector = spec.get("namespaceSelector") or {}
        names = ns_selector.get("matchNames") or [meta["namespace"]]
        selected = [
            svc
            for (ns, _), svc in sorted(services.items())
            if (ns_selector.get("any") or ns in names)
            and matches(spec.get("selector") or {}, svc.labels)
        ]
        for index, endpoint in enumerate(spec.get("endpoints") or []):
            interval = str(endpoint.get("interval") or "30s")
            seconds = duration_seconds(interval) or 30.0
            timeout = str(endpoint.get("scrapeTimeout") or ("10s" if seconds >= 10 else interval))
            job: dict[str, Any] = {
                "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "metrics_path": endpoint.get("path") or "/metrics",
                "scheme": endpoint.get("scheme") or "http",
                "scrape_interval": interval,
                "scrape_timeout": timeout,
            }
            if endpoint.get("params"):
                job["params"] = endpoint["params"]
            groups = []
            for svc in selected:
                port = svc.port(endpoint.get("port") or endpoint.get("targetPort"))
                if port is None:
                    continue
                for ep in port.endpoints:
                    job_label = svc.labels.get(spec.get("jobLabel", ""), svc.name)
                    labels = {
                        "namespace": svc.namespace,
                        "service": svc.name,
                        "pod": ep.pod,
                        "container": ep.container,
                        "endpoint": port.name or str(port.port),
                        "job": job_label,
                    }
                    for key in spec.get("targetLabels") or []:
                        if key in svc.labels:
                            labels[_label(key)] = svc.labels[key]
                    for key in spec.get("podTargetLabels") or []:
                        if key in ep.labels:
                            labels[_label(key)] = ep.labels[key]
                    groups.append({"targets": [ep.address], "labels": labels})
            if groups:
                job["static_configs"] = groups
            jobs.append(job)
    return jobs


class LocalPrometheus(Detached):
    """The Prometheus process and its config under `<platform>/prometheus`."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "prometheus"
        super().__init__(
            self.folder / "state.json", self.folder / "prometheus.log", "Prometheus", grace=10.0
        )
        self.config = self.folder / "prometheus.yml"

    def url(self) -> str | None:
        """`http://127.0.0.1:PORT` while Prometheus runs."""
        if self.pid() is None:
            return None
        return f"http://127.0.0.1:{self.state()['port']}"

    def apply(
        self, monitors: list[dict[str, Any]], services: dict[tuple[str, str], ServiceEndpoints]
    ) -> None:
        """Make Prometheus scrape what the monitors select: start it, or reload its config."""
        running = self.pid() is not None
        if not monitors and not running:
            return
        config = {
            "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "scrape_configs": scrape_jobs(monitors, services),
        }
        text = "# Generated by llmflow (workflows/local/kinds/_prometheus.py); do not edit.\n"
        changed = write_text(self.config, text + yaml.safe_dump(config, sort_keys=False))
        if not running:
            self._start()
        elif changed:
            self._reload()

    def _start(self) -> None:
        port = self.next_port()
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            find_prometheus(),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={data}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ]
        self.start(command, port, self.folder, ready_within=30)

    def _reload(self) -> None:
        url = self.url()
        if url is None:
            return
        request = urllib.request.Request(f"{url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except OSError as exc:
            raise RunError(
                f"Prometheus refused its new config ({exc}); log {self.log}:\n"
                f"{_pods.tail(self.log)}"
            ) from exc

"""Metric sources: vLLM's metric names, Prometheus per version, probe records, live checks."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from serving.metrics import (
    VLLM_METRICS,
    ArmMetrics,
    MetricsUnavailable,
    ProbeSource,
    PrometheusSource,
    live_checks,
)
from serving.policy import CanaryPolicy
from serving.probe import probe
from serving.probe_sets import load_probe_set
from serving.records import ProbeSet
from tests.prometheus_server import PrometheusServer
from tests.vllm_server import TINY_SERVED_NAME, VLLMServer
from workflows.local.s3 import free_port

PROMPTS = load_probe_set("tiny")
OPTIONS = {"model": TINY_SERVED_NAME, "concurrency": 4, "max_tokens": 8, "timeout_s": 60.0}


def root(server: VLLMServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def send(server: VLLMServer, n: int, model: str = TINY_SERVED_NAME) -> list[dict[str, object]]:
    return asyncio.run(probe(root(server), PROMPTS[:n], **{**OPTIONS, "model": model}))


@pytest.fixture(scope="module")
def prometheus(
    vllm_tiny: VLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping vllm_tiny every second as `version="v1"`."""
    folder = tmp_path_factory.mktemp("prometheus")
    targets = {f"127.0.0.1:{vllm_tiny.port}": {"version": "v1"}}
    with PrometheusServer(folder, targets) as server:
        yield server


# --- vLLM's metric names ----------------------------------------------------------------


def test_every_metric_name_is_served_by_vllm(vllm_tiny: VLLMServer) -> None:
    assert all(r["ok"] for r in send(vllm_tiny, 1))
    with urllib.request.urlopen(f"{root(vllm_tiny)}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    names = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in samples}
    for ours, name in VLLM_METRICS.items():
        family = {name, f"{name}_bucket"}  # a histogram's samples are its buckets
        assert family & names, f"{ours}: {name} not in vLLM's /metrics"
    for histogram in ("ttft", "itl", "e2e"):
        assert f"{VLLM_METRICS[histogram]}_bucket" in names
    reasons = set(re.findall(r'request_success_total\{[^}]*finished_reason="(\w+)"', text))
    assert {"stop", "length", "abort", "error"} <= reasons
    assert re.search(r'http_requests_total\{[^}]*handler="/v1/completions"', text)
    assert re.search(r'http_requests_total\{[^}]*status="2xx"', text)


# --- Prometheus -------------------------------------------------------------------------


def test_prometheus_source_counts_a_versions_requests(
    vllm_tiny: VLLMServer, prometheus: PrometheusServer
) -> None:
    source = PrometheusSource(prometheus.url, window="5m")
    send(vllm_tiny, 1)  # at least one request on every counter series before the baseline
    selector = 'version="v1",handler="/v1/completions"'
    prometheus.wait_for(
        lambda: bool(prometheus.query(f"http_requests_total{{{selector}}}")),
        "Prometheus to scrape vllm_tiny's HTTP counter",
    )
    before = source.arm("v1")
    records = send(vllm_tiny, 12)
    failed = send(vllm_tiny, 1, model="no-such-model")  # refused with 404 before the engine
    assert all(r["ok"] for r in records) and not failed[0]["ok"]
    prometheus.wait_for(
        lambda: source.arm("v1").requests >= before.requests + 13,
        "the 13 requests to show in Prometheus",
    )
    after = source.arm("v1")
    assert after.requests == before.requests + 13
    assert after.errors == before.errors + 1
    assert after.error_rate == pytest.approx(after.errors / after.requests)
    for name in ("ttft_p50", "ttft_p95", "itl_p50", "itl_p95", "e2e_p50", "e2e_p95"):
        value = getattr(after, name)
        assert value is not None and value > 0, name
    assert after.ttft_p50 <= after.ttft_p95  # type: ignore[operator]
    assert "v1" in after.source


def test_prometheus_without_the_version_or_unreachable(prometheus: PrometheusServer) -> None:
    with pytest.raises(MetricsUnavailable, match=r"no data for version='v9'.*ServiceMonitor"):
        PrometheusSource(prometheus.url).arm("v9")
    narrowed = PrometheusSource(prometheus.url, extra_selector='job="other"')
    with pytest.raises(MetricsUnavailable, match="no data"):
        narrowed.arm("v1")
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MetricsUnavailable, match=re.escape(dead) + ".*unreachable"):
        PrometheusSource(dead, timeout_s=2).arm("v1")
    with pytest.raises(MetricsUnavailable, match="HTTP 400"):
        PrometheusSource(prometheus.url, window="five minutes").arm("v1")


# --- probe records ----------------------------------------------------------------------


def test_probe_source_from_records() -> None:
    ok = np.array([True] * 9 + [False])
    ttft = np.array([0.1 * (i + 1) for i in range(9)] + [np.nan])
    records = ProbeSet.from_columns(
        prompt_tokens=np.full(10, 20), ttft_s=ttft, itl_s=ttft / 10, ok=ok, source="a.jsonl"
    )
    arm = ProbeSource({"v1": records}).arm("v1")
    assert (arm.requests, arm.errors, arm.error_rate) == (10, 1, 0.1)
    assert arm.ttft_p50 == pytest.approx(0.5) and arm.itl_p50 == pytest.approx(0.05)
    assert arm.e2e_p50 is None  # no e2e in these records
    with pytest.raises(MetricsUnavailable, match="no probe records for version 'v2'.*v1"):
        ProbeSource({"v1": records}).arm("v2")


# --- live checks ------------------------------------------------------------------------


def arm(requests: int, errors: int, ttft: float = 0.1, itl: float = 0.02) -> ArmMetrics:
    return ArmMetrics(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        ttft_p50=ttft,
        ttft_p95=ttft * 3,
        itl_p50=itl,
        itl_p95=itl * 2,
        e2e_p50=1.0,
        e2e_p95=2.0,
        source="test",
    )


def verdicts(stable: ArmMetrics, canary: ArmMetrics) -> dict[str, str]:
    return {c.name: c.verdict for c in live_checks(stable, canary, CanaryPolicy())}


def test_live_checks_fail_on_many_more_errors() -> None:
    result = verdicts(arm(1000, 2), arm(1000, 80))
    assert result["live_error_rate"] == "FAIL"
    assert {v for k, v in result.items() if k != "live_error_rate"} == {"SKIPPED"}


def test_live_checks_fail_on_a_large_latency_regression_only() -> None:
    assert verdicts(arm(500, 0), arm(500, 0, ttft=1.0))["live_ttft_p50"] == "FAIL"
    # 2x slower is a regression, but within what bucket interpolation can produce: no FAIL.
    assert verdicts(arm(500, 0), arm(500, 0, itl=0.04))["live_itl_p50"] == "SKIPPED"


def test_live_checks_never_fail_equal_arms_or_few_requests() -> None:
    assert set(verdicts(arm(1000, 5), arm(1000, 5)).values()) == {"SKIPPED"}
    assert set(verdicts(arm(10, 0), arm(10, 8, ttft=5.0, itl=1.0)).values()) == {"SKIPPED"}
    assert set(verdicts(arm(0, 0), arm(0, 0)).values()) == {"SKIPPED"}
    names = [c.name for c in live_checks(arm(100, 0), arm(100, 0), CanaryPolicy())]
    assert names == [
        "live_error_rate",
        "live_ttft_p50",
        "live_ttft_p95",
        "live_itl_p50",
        "live_itl_p95",
    ]


def test_live_checks_leave_the_verdict_to_the_probe() -> None:
    """SKIPPED checks added to a probe judgement's checks do not change its verdict."""
    from serving.judge import _overall  # the combination rule the judge uses

    passing = live_checks(arm(1000, 5), arm(1000, 5), CanaryPolicy())
    assert _overall(passing, 0.95)[0] == "PASS"
    failing = live_checks(arm(1000, 2), arm(1000, 80), CanaryPolicy())
    assert _overall(failing, 0.95)[0] == "FAIL"
    json.dumps([c.__dict__ for c in failing])  # JSON-ready for the report


def test_prometheus_buckets_count_the_window_and_read_at_a_time(
    vllm_tiny: VLLMServer, prometheus: PrometheusServer
) -> None:
    source = PrometheusSource(prometheus.url, window="5m")
    send(vllm_tiny, 1)
    prometheus.wait_for(
        lambda: source.requests("v1") >= 1, "Prometheus to scrape vllm_tiny's counters"
    )
    time.sleep(2.5)  # a scrape after the baseline request
    before_at = time.time()
    before = source.buckets("e2e", "v1")
    requests_before = source.requests("v1")
    send(vllm_tiny, 9)
    prometheus.wait_for(
        lambda: source.buckets("e2e", "v1")[-1][1] >= before[-1][1] + 9,
        "the 9 requests to show in the e2e histogram",
    )
    after = source.buckets("e2e", "v1")
    bounds = [b for b, _ in after]
    counts = [c for _, c in after]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    assert counts == sorted(counts)  # cumulative
    assert after[-1][1] == before[-1][1] + 9
    assert source.requests("v1") == requests_before + 9
    # Evaluated at a time before the 9 requests, the window does not hold them.
    past = PrometheusSource(prometheus.url, window="5m", at=before_at)
    assert past.buckets("e2e", "v1")[-1][1] == before[-1][1]

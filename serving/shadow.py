"""The shadow stage's analysis: the candidate under mirrored live traffic, judged against stable.

During a shadow the gateway mirrors a random fraction of live requests to the candidate, and
stable answers every client. So both versions serve the same prompt mix in the same window,
and Prometheus's per-version histograms compare like with like, which they cannot in a canary
(where each version serves different requests). The analysis:

1. warms the candidate up (`serving.analysis.warm_up`: a fresh server's first requests are
   slow) and lets a scrape pass, so the window holds only mirrored traffic;
2. keeps the window open for the spec's `duration`, or until the candidate has finished
   `requests` requests (polling Prometheus), waiting at most `timeout`;
3. reads each version's latency histograms and request and error counts over exactly that
   window (every query evaluated at the window's end);
4. probes both versions with the probe set afterwards, for answer quality, which live traffic
   cannot grade (no reference answers); not when live traffic has already failed it.

Latency checks are distribution-free: for each quantile q the binomial law of order
statistics gives ranks whose values bound the true quantile at the chosen confidence, and the
histogram bounds those values by the edges of the buckets holding the ranks. The candidate's
ratio to stable is bounded by dividing the bounds (each arm at alpha/2, so the ratio's bound
holds at alpha). Unlike interpolated `histogram_quantile` ratios, the interval cannot be
fooled by bucket width: coarse buckets give a wide interval, hence INCONCLUSIVE, never a wrong
PASS; vLLM's `--custom-histogram-buckets` narrows them. The error rate is Newcombe's interval,
answer quality the probe judge's paired check (`serving.judge`).

FAIL when any check shows a regression beyond tolerance, PASS when every check shows the
candidate within it, else INCONCLUSIVE; only PASS lets the candidate on to the canary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from serving.analysis import ProbeSettings, probe_batches, warm_up
from serving.judge import Check, Judgement, Verdict, json_ready, read_interval
from serving.metrics import ArmMetrics, MetricsUnavailable, PrometheusSource, live_error_check
from serving.policy import CanaryPolicy
from serving.probe_sets import ProbePrompt

#: Our histogram names by the policy's latency metric.
HISTOGRAMS = {"ttft_s": "ttft", "itl_s": "itl", "e2e_s": "e2e"}

#: How histogram buckets are given: (upper bound `le`, cumulative count), ascending, last inf.
Buckets = Sequence[tuple[float, int]]


@dataclass(frozen=True)
class ShadowSettings:
    """What ends the window, and how fresh Prometheus's data is.

    Attributes:
        fraction: Share of live requests mirrored (reported; the route applies it).
        duration_s: Keep the window open this long; None when `requests` ends it.
        requests: Close the window when the candidate has finished this many requests.
        timeout_s: With `requests`: the longest the window stays open.
        scrape_interval_s: Prometheus's scrape interval (waits of two let a scrape land).
    """

    fraction: float
    duration_s: float | None
    requests: int | None
    timeout_s: float
    scrape_interval_s: float


@dataclass
class ShadowAnalysis:
    """What the shadow decided and the evidence for it.

    Attributes:
        verdict: PASS, FAIL or INCONCLUSIVE.
        reason: One sentence: which evidence decided it.
        fraction: Share of live traffic mirrored.
        started_at: The window's start (Unix time).
        ended_at: The window's end.
        stable: Prometheus's view of stable over the window.
        candidate: Prometheus's view of the candidate over the window.
        live: Latency and error checks from Prometheus.
        quality: The probe's answer-quality check; None when live traffic failed first.
        probe: The probe's whole judgement (its latency checks are at probe load, reported
            only).
        live_error: Why Prometheus could not be read, if it could not.
    """

    verdict: Verdict
    reason: str
    fraction: float
    started_at: float
    ended_at: float
    stable: ArmMetrics | None = None
    candidate: ArmMetrics | None = None
    live: list[Check] = field(default_factory=list)
    quality: Check | None = None
    probe: Judgement | None = None
    live_error: str | None = None

    @property
    def window_s(self) -> float:
        """The window's length in seconds."""
        return self.ended_at - self.started_at


def analyse_shadow(
    prometheus_url: str,
    urls: tuple[str, str],
    versions: tuple[str, str],
    prompts: Sequence[ProbePrompt],
    probe: ProbeSettings,
    policy: CanaryPolicy,
    settings: ShadowSettings,
    *,
    extensions: int,
    records_dir: Path,
) -> ShadowAnalysis:
    """Hold the shadow window open, then judge the candidate from Prometheus and the probe.

    Args:
        prometheus_url: Prometheus's root.
        urls: Base URLs of the (stable, candidate) Services.
        versions: Version labels of (stable, candidate) on their series.
        prompts: The probe set (quality, and the warm-up).
        probe: How the probe sends its requests.
        policy: Tolerances, quantiles, confidence and `min_samples`.
        settings: What ends the window.
        extensions: Extra probe batches while quality is INCONCLUSIVE.
        records_dir: Where the probe records go.
    """
    warm_up(urls, prompts, probe)
    settle = 2 * settings.scrape_interval_s
    time.sleep(settle)  # the warm-up is scraped before the window opens
    started = time.time()
    _wait(prometheus_url, versions[1], settings, started)
    time.sleep(settle)  # the window's last requests are scraped
    ended = time.time()
    result = ShadowAnalysis("INCONCLUSIVE", "", settings.fraction, started, ended)
    window = f"{max(1, math.ceil(ended - started))}s"
    source = PrometheusSource(prometheus_url, window=window, at=ended)
    try:
        result.stable = source.arm(versions[0])
        result.candidate = source.arm(versions[1])
        buckets = {
            (metric, version): source.buckets(HISTOGRAMS[metric], version)
            for metric in policy.metrics
            for version in versions
        }
    except MetricsUnavailable as exc:
        result.live_error = str(exc)
        result.verdict, result.reason = "FAIL", f"analysis failed, rolling back: {exc}"
        return result
    result.live = [live_error_check(result.stable, result.candidate, policy, decides=True)]
    for metric in policy.metrics:
        for q in policy.quantiles:
            result.live.append(
                latency_check(
                    metric,
                    q,
                    buckets[(metric, versions[0])],
                    buckets[(metric, versions[1])],
                    policy,
                )
            )
    if not any(c.verdict == "FAIL" for c in result.live):
        # Quality is probed only while it can still matter: a failed live check decides.
        result.probe, result.quality = _quality(
            urls, prompts, probe, policy, extensions, records_dir
        )
    result.verdict, result.reason = decide(result.live, result.quality, result.candidate)
    return result


def _wait(url: str, version: str, settings: ShadowSettings, started: float) -> None:
    """Keep the window open: for `duration_s`, or until `requests` came or `timeout_s` passed."""
    if settings.duration_s is not None:
        time.sleep(settings.duration_s)
        return
    assert settings.requests is not None
    poll = max(1.0, settings.scrape_interval_s)
    while time.time() - started < settings.timeout_s:
        time.sleep(poll)
        window = max(1, math.ceil(time.time() - started))
        try:
            seen = PrometheusSource(url, window=f"{window}s").requests(version)
        except MetricsUnavailable:
            return  # no evidence can come: the judgement that follows fails with the reason
        if seen >= settings.requests:
            return


def quantile_bounds(buckets: Buckets, q: float, alpha: float) -> tuple[float, float]:
    """Bounds on one arm's q-quantile, each one-sided at `alpha`; (0, inf) without data.

    Order statistic X_(k) lies at or below the quantile with probability P(Bin(n, q) >= k), and
    X_(j) at or above it with probability P(Bin(n, q) <= j - 1); the largest such k and the
    smallest such j at 1 - alpha are bounded in turn by their buckets' lower and upper edges.
    """
    n = buckets[-1][1] if buckets else 0
    if n == 0:
        return 0.0, math.inf
    cdf = _binomial_cdf(n, q)
    # lower: largest k >= 1 with P(X >= k) = 1 - cdf[k - 1] >= 1 - alpha
    ks = [k for k in range(1, n + 1) if cdf[k - 1] <= alpha]
    # upper: smallest j <= n with P(X <= j - 1) = cdf[j - 1] >= 1 - alpha
    js = [j for j in range(1, n + 1) if cdf[j - 1] >= 1 - alpha]
    lower = _bucket_edges(buckets, ks[-1])[0] if ks else 0.0
    upper = _bucket_edges(buckets, js[0])[1] if js else math.inf
    return lower, upper


def latency_check(
    metric: str, q: float, stable: Buckets, candidate: Buckets, policy: CanaryPolicy
) -> Check:
    """The candidate's q-quantile over stable's, bounded from both arms' histograms.

    Args:
        metric: The policy's latency metric (`ttft_s`, `itl_s`, `e2e_s`).
        q: The quantile, e.g. 0.5.
        stable: Stable's buckets over the window.
        candidate: The candidate's buckets over the same window.
        policy: Tolerance, confidence and `min_samples`.
    """
    name = f"live_{HISTOGRAMS[metric]}_p{round(q * 100)}"
    limit = 1 + policy.latency_tolerance
    alpha = 1 - policy.confidence
    n_s = stable[-1][1] if stable else 0
    n_c = candidate[-1][1] if candidate else 0
    method = (
        "ratio of distribution-free order-statistic bounds (each arm at alpha/2), widened to "
        "the histogram's bucket edges"
    )
    estimate = _ratio(_interpolated(candidate, q), _interpolated(stable, q))
    if min(n_s, n_c) < policy.min_samples:
        reason = (
            f"too few live requests ({n_s} stable, {n_c} candidate; {policy.min_samples} "
            "needed): keep the shadow open longer or mirror more traffic"
        )
        return Check(
            name, "INCONCLUSIVE", estimate, None, limit, min(n_s, n_c), n_s, n_c, method, reason
        )
    s_low, s_high = quantile_bounds(stable, q, alpha / 2)
    c_low, c_high = quantile_bounds(candidate, q, alpha / 2)
    lower = c_low / s_high if s_high > 0 else 0.0
    upper = c_high / s_low if s_low > 0 else math.inf
    verdict, reason = read_interval(lower, upper, limit, higher_is_worse=True, unit="ratio")
    wide = any(low <= 0 or high / low > limit for low, high in ((s_low, s_high), (c_low, c_high)))
    if verdict == "INCONCLUSIVE" and wide:
        reason += (
            f" (the candidate's p{round(q * 100)} lies in [{c_low:.4g}, {c_high:.4g}] s, "
            f"stable's in [{s_low:.4g}, {s_high:.4g}] s: finer buckets narrow it, see vLLM's "
            "--custom-histogram-buckets)"
        )
    interval = (lower, upper)
    return Check(name, verdict, estimate, interval, limit, min(n_s, n_c), n_s, n_c, method, reason)


def decide(
    live: Sequence[Check], quality: Check | None, candidate: ArmMetrics | None
) -> tuple[Verdict, str]:
    """FAIL if any check fails, PASS if all that apply pass, else INCONCLUSIVE."""
    if candidate is not None and candidate.requests == 0:
        return "INCONCLUSIVE", (
            "no live traffic reached the candidate: is anything sending requests to the "
            "gateway, and does the HTTPRoute mirror them?"
        )
    checks = [*live, *([quality] if quality is not None else [])]
    failed = [c.name for c in checks if c.verdict == "FAIL"]
    if failed:
        return "FAIL", f"regression shown by: {', '.join(failed)}"
    open_checks = [c.name for c in checks if c.verdict == "INCONCLUSIVE"]
    if open_checks:
        return "INCONCLUSIVE", f"not shown within tolerance: {', '.join(open_checks)}"
    return "PASS", "every check within tolerance under mirrored live traffic"


def shadow_report(analysis: ShadowAnalysis) -> dict[str, Any]:
    """The shadow's decision and evidence as a JSON-ready dict.

    Unbounded values (an interval's open end, the last bucket's bound) are null: strict JSON
    has no infinity, and `json.dumps` would write `Infinity`, which most readers refuse.
    """
    return json_ready(
        {
            "stage": "shadow",
            "verdict": analysis.verdict,
            "reason": analysis.reason,
            "fraction": analysis.fraction,
            "window": {
                "started_at": analysis.started_at,
                "ended_at": analysis.ended_at,
                "seconds": round(analysis.window_s, 3),
            },
            "live": {
                "error": analysis.live_error,
                "checks": {c.name: c.to_dict() for c in analysis.live},
                "stable": asdict(analysis.stable) if analysis.stable else None,
                "candidate": asdict(analysis.candidate) if analysis.candidate else None,
            },
            "quality": analysis.quality.to_dict() if analysis.quality else None,
            "probe": analysis.probe.to_dict() if analysis.probe else None,
        }
    )


def evidence(analysis: ShadowAnalysis) -> dict[str, Any]:
    """What a release record keeps of the shadow: the verdict and each check, compactly."""
    checks = [*analysis.live, *([analysis.quality] if analysis.quality else [])]
    return {
        "verdict": analysis.verdict,
        "reason": analysis.reason,
        "fraction": analysis.fraction,
        "window_s": round(analysis.window_s, 1),
        "requests": {
            "stable": analysis.stable.requests if analysis.stable else None,
            "candidate": analysis.candidate.requests if analysis.candidate else None,
        },
        "checks": {c.name: c.compact() for c in checks},
    }


def summary(analysis: ShadowAnalysis) -> str:
    """One line of evidence: window, requests, and each check's verdict and interval."""
    parts = [f"{analysis.window_s:.0f} s window, fraction {analysis.fraction:g}"]
    if analysis.stable and analysis.candidate:
        parts.append(
            f"{analysis.candidate.requests} mirrored requests against stable's "
            f"{analysis.stable.requests}"
        )
    for check in [*analysis.live, *([analysis.quality] if analysis.quality else [])]:
        bounds = f" [{check.interval[0]:.3g}, {check.interval[1]:.3g}]" if check.interval else ""
        parts.append(f"{check.name} {check.verdict}{bounds}")
    return "; ".join(parts)


def _quality(
    urls: tuple[str, str],
    prompts: Sequence[ProbePrompt],
    settings: ProbeSettings,
    policy: CanaryPolicy,
    extensions: int,
    records_dir: Path,
) -> tuple[Judgement, Check]:
    """Probe both versions with graded prompts until quality is decided.

    At most 1 + extensions batches, the confidence split over them as the canary does; only
    the quality check decides (the probe's latency is at probe load, live traffic judges it).
    """

    def quality(judgement: Judgement) -> Check:
        return next(c for c in judgement.checks if c.name == "quality")

    paths = (records_dir / "stable-shadow.jsonl", records_dir / "candidate-shadow.jsonl")
    judgement, _, _ = probe_batches(
        urls,
        prompts,
        settings,
        policy,
        extensions=extensions,
        paths=paths,
        decided=lambda j: quality(j).verdict != "INCONCLUSIVE",
    )
    return judgement, quality(judgement)


def _binomial_cdf(n: int, p: float) -> list[float]:
    """P(Bin(n, p) <= i) for i = 0..n, from log-space probabilities (no overflow)."""
    if p <= 0:
        return [1.0] * (n + 1)
    if p >= 1:
        return [0.0] * n + [1.0]
    log_p, log_q = math.log(p), math.log1p(-p)
    total, out = 0.0, []
    for i in range(n + 1):
        log_pmf = (
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * log_p
            + (n - i) * log_q
        )
        total += math.exp(log_pmf)
        out.append(min(total, 1.0))
    return out


def _bucket_edges(buckets: Buckets, rank: int) -> tuple[float, float]:
    """The (lower, upper) edges of the bucket holding the rank-th smallest observation."""
    lower = 0.0
    for bound, count in buckets:
        if count >= rank:
            return lower, bound
        lower = bound
    return lower, math.inf


def _interpolated(buckets: Buckets, q: float) -> float | None:
    """`histogram_quantile`'s linear interpolation within the bucket (the point estimate)."""
    n = buckets[-1][1] if buckets else 0
    if n == 0:
        return None
    rank, lower, below = q * n, 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if not math.isfinite(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator

"""Latency checks of the canary judge: quantile ratios that a different prompt mix cannot fake.

Time to first token grows with prompt length, so comparing raw quantiles of two arms that see
different prompts measures their prompt mix, not their speed. Two designs remove the mix:

* Paired (the arms answered the same prompt ids): the same prompts on both sides; resampling
  whole prompts keeps each pair together, so prompt-to-prompt spread cancels in the ratio.
* Strata (otherwise): requests are binned by prompt length (quantile bins of both arms
  together), and within a bin log latency is adjusted by a curve in log prompt length fitted
  to both arms at once with a separate level per arm (so a canary's slowdown is never absorbed
  into the curve): within a bin the arms then differ by their speed, not by which lengths
  they happened to get.

A quantile check compares the arms within each bin and combines the bins' log ratios weighted
by the pooled share of each bin (direct standardisation), so both arms are judged on the same
prompt mix. Bins must hold enough requests for the quantile (10 per arm for the median, 100
for p95, `_min_per_bin`), so tail checks use fewer bins. Resampling is stratified: each arm's
count per bin stays fixed, and bins are resampled independently.

The combined ratio dilutes a regression confined to some prompt lengths, so the median is also
compared bin by bin and the worst bin checked, with a Bonferroni correction over bins: each
bin's bounds use alpha / S, so the maximum of the bins' lower bounds exceeds the true worst
ratio with probability at most alpha. Bins are disjoint samples, hence independent, and
Sidak's exact correction would differ from Bonferroni's only in the third decimal of alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from serving._resample import (
    CHUNK_ELEMENTS,
    quantile_replicates,
    resample_counts,
    sample_quantile,
    weighted_quantiles,
)
from serving.policy import CanaryPolicy
from serving.records import ProbeSet

MIN_TAIL = 5
"""Fewest requests of an arm, per bin, on the far side of a quantile (5 above a p95 means 100
per bin): fewer, and the bin's quantile is an extreme order statistic whose bootstrap fails."""

SHORT_NAMES = {"ttft_s": "ttft", "itl_s": "itl", "e2e_s": "e2e"}


@dataclass(frozen=True)
class Interval:
    """A log-ratio estimate with its two one-sided bounds, and the sample sizes behind it."""

    name: str
    estimate: float | None
    lower: float | None
    upper: float | None
    n_stable: int
    n_canary: int
    method: str
    note: str = ""


@dataclass(frozen=True)
class _Bins:
    """Per-bin log-ratio replicates of one quantile, and what they rest on."""

    point: np.ndarray
    boot: np.ndarray
    share: np.ndarray
    edges: np.ndarray


def latency_intervals(
    stable: ProbeSet,
    canary: ProbeSet,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    metric: str,
    policy: CanaryPolicy,
    alpha: float,
) -> list[Interval]:
    """Log-ratio intervals (canary over stable) of one latency metric's quantiles.

    Args:
        stable: The stable arm's records.
        canary: The canary arm's records.
        pairs: Positions of matched records (stable, canary), or None for the strata design.
        metric: `ttft_s`, `itl_s` or `e2e_s`.
        policy: Quantiles, strata, resamples, seed, minimum samples.
        alpha: One-sided error rate of each bound.

    Returns:
        One interval per policy quantile, then the worst prompt-length bin's; estimates and
        bounds are None when an arm has fewer than `min_samples` usable requests.
    """
    short = SHORT_NAMES[metric]
    names = [f"{short}_p{q * 100:g}" for q in policy.quantiles]
    worst_name = f"{short}_p{policy.stratum_quantile * 100:g}_worst_stratum"
    ys, ts, yc, tc = _log_latencies(stable, canary, pairs, metric)
    if min(ys.size, yc.size) < policy.min_samples:
        note = (
            f"too few requests with {metric}: {ys.size} stable, {yc.size} canary, the policy "
            f"needs {policy.min_samples} per arm"
        )
        return [
            Interval(n, None, None, None, ys.size, yc.size, "", note) for n in [*names, worst_name]
        ]
    if pairs is None:
        ys, yc = _adjust_for_length(ys, ts, yc, tc)
        design = "log latency adjusted for prompt length (common curve), each arm resampled"
    else:
        design = "paired by prompt_id, pairs resampled"
    rng = np.random.default_rng(policy.seed)
    method = (
        f"{design} within prompt-length bins; percentile bootstrap, {policy.resamples} "
        f"resamples, seed {policy.seed}"
    )
    out = []
    computed: dict[float, _Bins] = {}
    for name, q in zip(names, policy.quantiles, strict=True):
        b = computed[q] = _bin_replicates(ys, ts, yc, tc, pairs is not None, q, rng, policy)
        lower, upper = np.quantile(b.boot @ b.share, [alpha, 1 - alpha])
        out.append(
            Interval(
                name,
                float(b.point @ b.share),
                float(lower),
                float(upper),
                ys.size,
                yc.size,
                f"{method}; bins' log ratios combined with pooled shares ({b.share.size} bins)",
            )
        )
    q = policy.stratum_quantile
    b = computed.get(q) or _bin_replicates(ys, ts, yc, tc, pairs is not None, q, rng, policy)
    out.append(_worst_stratum(worst_name, b, alpha, ys.size, yc.size, method))
    return out


def _worst_stratum(
    name: str, bins: _Bins, alpha: float, n_stable: int, n_canary: int, method: str
) -> Interval:
    """The largest per-bin log ratio, with Bonferroni bounds over bins."""
    count = bins.share.size
    if count == 1:
        note = "one prompt-length stratum only"
        return Interval(name, None, None, None, n_stable, n_canary, method, note)
    lowers, uppers = np.quantile(bins.boot, [alpha / count, 1 - alpha / count], axis=0)
    worst = int(np.argmax(lowers))
    bounds = np.concatenate([[0], np.ceil(bins.edges), [math.inf]])
    note = (
        f"highest lower bound in prompt_tokens [{bounds[worst]:g}, {bounds[worst + 1]:g}) of "
        f"{count} strata"
    )
    return Interval(
        name,
        float(bins.point.max()),
        float(lowers.max()),
        float(uppers.max()),
        n_stable,
        n_canary,
        f"{method}; per-bin bounds at alpha/{count} (Bonferroni), maxima over bins",
        note,
    )


def _bin_replicates(
    ys: np.ndarray,
    ts: np.ndarray,
    yc: np.ndarray,
    tc: np.ndarray,
    paired: bool,
    q: float,
    rng: np.random.Generator,
    policy: CanaryPolicy,
) -> _Bins:
    """Each bin's canary-minus-stable log q-quantile: point estimate and bootstrap replicates.

    The same bins serve the quantile's combined check and, for the median, the worst-bin check.
    """
    labels_s, labels_c, edges = _strata(ts, tc, policy.strata, _min_per_bin(q))
    count = edges.size + 1
    share = np.bincount(np.concatenate([labels_s, labels_c]), minlength=count) / (
        labels_s.size + labels_c.size
    )
    point = np.empty(count)
    boot = np.empty((policy.resamples, count))
    for s in range(count):
        in_s, in_c = labels_s == s, labels_c == s
        if paired:
            point[s], boot[:, s] = _paired_bin(ys[in_s], yc[in_c], q, rng, policy.resamples)
            continue
        ordered_s, ordered_c = np.sort(ys[in_s]), np.sort(yc[in_c])
        point[s] = sample_quantile(ordered_c, q) - sample_quantile(ordered_s, q)
        boot[:, s] = quantile_replicates(ordered_c, q, policy.resamples, rng) - (
            quantile_replicates(ordered_s, q, policy.resamples, rng)
        )
    return _Bins(point, boot, share, edges)


def _paired_bin(
    ys: np.ndarray, yc: np.ndarray, q: float, rng: np.random.Generator, rows: int
) -> tuple[float, np.ndarray]:
    """Log q-quantile difference of paired values (position i is one prompt in both arms)."""
    point = sample_quantile(np.sort(yc), q) - sample_quantile(np.sort(ys), q)
    boot = np.empty(rows)
    step = max(1, CHUNK_ELEMENTS // ys.size)
    for start in range(0, rows, step):
        block = min(step, rows - start)
        counts = resample_counts(np.array([0, ys.size]), block, rng)
        boot[start : start + block] = (
            weighted_quantiles(yc, counts, (q,)) - weighted_quantiles(ys, counts, (q,))
        )[:, 0]
    return point, boot


def _min_per_bin(q: float) -> int:
    """Requests per arm a bin needs for its q-quantile: MIN_TAIL beyond it on the short side."""
    return math.ceil(MIN_TAIL / min(q, 1 - q) - 1e-9)


def _log_latencies(
    stable: ProbeSet,
    canary: ProbeSet,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    metric: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log latency and prompt tokens of the usable requests (pairs) of each arm."""
    vs, vc = stable.latency(metric), canary.latency(metric)
    if pairs is None:
        keep_s = stable.ok & np.isfinite(vs)
        keep_c = canary.ok & np.isfinite(vc)
        return (
            np.log(vs[keep_s]),
            stable.prompt_tokens[keep_s].astype(float),
            np.log(vc[keep_c]),
            canary.prompt_tokens[keep_c].astype(float),
        )
    i_s, i_c = pairs
    keep = stable.ok[i_s] & canary.ok[i_c] & np.isfinite(vs[i_s]) & np.isfinite(vc[i_c])
    # Same prompt, so the same length up to tokenizer detail: stratify both on their mean.
    tokens = (stable.prompt_tokens[i_s][keep] + canary.prompt_tokens[i_c][keep]) / 2.0
    return np.log(vs[i_s][keep]), tokens, np.log(vc[i_c][keep]), tokens


def _adjust_for_length(
    ys: np.ndarray, ts: np.ndarray, yc: np.ndarray, tc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract a common curve in log prompt length from both arms' log latencies.

    The curve is a quadratic in standardised log tokens, fitted by least squares to both arms
    with an indicator for the canary: the indicator takes up any overall difference between
    the arms, so the curve only describes how latency grows with length and is removed from
    both arms alike. Within a stratum the arms then differ only by their own speed, not by
    which lengths they happened to get. A common curve changes no comparison of equal lengths,
    which is why fitting it once (not per bootstrap replicate) leaves the intervals valid.
    """
    x = np.log(np.concatenate([ts, tc]))
    spread = float(x.std())
    x = (x - x.mean()) / (spread if spread > 0 else 1.0)
    degree = min(2, np.unique(x).size - 1)
    columns = [x**d for d in range(degree + 1)]
    arm = np.concatenate([np.zeros(ts.size), np.ones(tc.size)])
    design = np.column_stack([*columns, arm])
    y = np.concatenate([ys, yc])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design[:, : degree + 1] @ coef[: degree + 1]
    return residual[: ts.size], residual[ts.size :]


def _strata(
    ts: np.ndarray, tc: np.ndarray, wanted: int, minimum: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantile bins of the pooled prompt lengths: labels per arm and the inner edges.

    Starts from `wanted` bins and uses fewer until every bin holds `minimum` requests of each
    arm, so no bin's quantile rests on a handful of requests.
    """
    pooled = np.concatenate([ts, tc])
    for count in range(wanted, 0, -1):
        edges = np.unique(np.quantile(pooled, np.linspace(0, 1, count + 1)[1:-1]))
        labels_s = np.searchsorted(edges, ts, side="right")
        labels_c = np.searchsorted(edges, tc, side="right")
        bins = edges.size + 1
        sizes = np.concatenate(
            [np.bincount(labels_s, minlength=bins), np.bincount(labels_c, minlength=bins)]
        )
        if count == 1 or sizes.min() >= minimum:
            return labels_s, labels_c, edges
    raise AssertionError("unreachable: one stratum always qualifies")  # pragma: no cover

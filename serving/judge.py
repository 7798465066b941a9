"""The LLM-aware canary judge: PASS, FAIL or INCONCLUSIVE from two arms' probe records.

Fixed thresholds (Flagger) and static success conditions (Argo Rollouts) ignore that time to
first token grows with prompt length, and Kayenta's Mann-Whitney test needs 50+ one-minute
points. This judge compares the arms at equal prompt length (paired by prompt id, or within
prompt-length strata, see `serving._latency`), gives each check an estimate with two one-sided
bounds at the policy's confidence, and reads the verdict off the bounds:

* FAIL when some check's interval lies entirely beyond its tolerance (a regression shown);
* PASS when every check's interval lies entirely inside its tolerance (no regression beyond it);
* INCONCLUSIVE otherwise, and always when an arm has fewer than `min_samples` requests.

Each bound is one-sided at alpha = 1 - confidence, as in two one-sided tests (TOST), so a
check whose true value is within tolerance FAILs with probability at most alpha, and one beyond
it PASSes with probability at most alpha; PASS needs every check (an intersection-union test,
no correction needed). FAIL is not corrected over checks: a canary that sits exactly at the
tolerance on k checks at once could be failed with probability up to k * alpha, while an
unchanged canary sits far inside every tolerance and is failed far less often than alpha.

Checks: per latency metric (TTFT, ITL) the ratio of each quantile (median, p95) and the worst
prompt-length stratum's median ratio; the error rate's difference (Newcombe's hybrid score
interval); mean answer quality's difference (non-inferiority, with `evals.gate`'s exact paired
Clopper-Pearson bound or paired BCa bootstrap when prompts are paired).

Sequential use (`judge_sequential`) judges after each batch at alpha / max_looks per look
(Bonferroni over a fixed number of looks), so over all looks each check's false FAIL rate stays
at most alpha however the looks are correlated; it stops at the first PASS or FAIL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from evals.gate import MIN_BOOTSTRAP_ITEMS, bootstrap_lower, paired_binary_lower
from serving._latency import Interval, latency_intervals
from serving.policy import CanaryPolicy, load_policy
from serving.records import CanaryInputError, ProbeSet, read_probes

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
CheckVerdict = Literal["PASS", "FAIL", "INCONCLUSIVE", "SKIPPED"]

PAIRING_COVERAGE = 0.9
"""Share of each arm's records whose prompt_id must match for `auto` to pair the arms."""


@dataclass(frozen=True)
class Check:
    """One comparison of the canary with the stable arm.

    Attributes:
        name: E.g. `ttft_p95`, `itl_p50_worst_stratum`, `error_rate`, `quality`.
        verdict: PASS, FAIL, INCONCLUSIVE; SKIPPED when there is nothing to compare (no scores).
        estimate: Canary over stable for latency (a ratio), canary minus stable otherwise.
        interval: The two one-sided bounds [lower, upper] at the policy's confidence.
        limit: The tolerance on the estimate's scale (1.1 for +10%; 0.01; -0.05).
        n: Requests of the smaller arm (pairs, when paired) behind the check.
        n_stable: Stable requests used.
        n_canary: Canary requests used.
        method: How the interval was computed.
        reason: Why the verdict is what it is, in one sentence.
    """

    name: str
    verdict: CheckVerdict
    estimate: float | None
    interval: tuple[float, float] | None
    limit: float
    n: int
    n_stable: int
    n_canary: int
    method: str
    reason: str

    def compact(self) -> dict[str, Any]:
        """The check as a release record keeps it: verdict, estimate, interval, limit."""
        return json_ready(
            {
                "verdict": self.verdict,
                "estimate": None if self.estimate is None else round(self.estimate, 4),
                "interval": None if self.interval is None else [round(v, 4) for v in self.interval],
                "limit": self.limit,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The check without its name (reports key checks by name); `json_ready` it to write."""
        return {k: v for k, v in asdict(self).items() if k != "name"}


def json_ready(value: Any) -> Any:
    """`value` with every non-finite float, however deep, replaced by None.

    Strict JSON has no infinity: `json.dumps` would write `Infinity` for an interval's open
    end or a histogram's last bound, which most readers (jq, JavaScript, Go) refuse.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


@dataclass(frozen=True)
class Judgement:
    """The verdict and the evidence for it.

    Attributes:
        verdict: PASS, FAIL or INCONCLUSIVE.
        reason: Which checks decided it.
        design: `paired` (by prompt_id) or `strata` (prompt-length strata).
        confidence: Confidence of each one-sided bound (lowered per look when sequential).
        n_stable: Stable records.
        n_canary: Canary records.
        checks: Every check, in a fixed order.
        policy: The policy judged by.
    """

    verdict: Verdict
    reason: str
    design: str
    confidence: float
    n_stable: int
    n_canary: int
    checks: tuple[Check, ...]
    policy: CanaryPolicy

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (an unbounded interval end is null); checks keyed by name."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "design": self.design,
            "confidence": self.confidence,
            "n_stable": self.n_stable,
            "n_canary": self.n_canary,
            "checks": {c.name: json_ready(c.to_dict()) for c in self.checks},
            "policy": self.policy.model_dump(mode="json"),
        }

    def to_json(self) -> str:
        """One JSON object on one line, as `llmflow canary judge` prints it."""
        return json.dumps(self.to_dict(), allow_nan=False)


@dataclass(frozen=True)
class SequentialResult:
    """A sequential judgement: the verdict at the look where it stopped.

    Attributes:
        judgement: The last look's judgement.
        looks: Looks taken (batches judged).
    """

    judgement: Judgement
    looks: int


def judge_files(stable: Path, canary: Path, policy: Path | None = None) -> Judgement:
    """Judge two JSONL probe files under a policy file (or the default policy).

    Raises:
        CanaryInputError: A file or the policy cannot be used; the message says where.
    """
    return judge(read_probes(stable), read_probes(canary), load_policy(policy))


def judge(
    stable: ProbeSet,
    canary: ProbeSet,
    policy: CanaryPolicy | None = None,
    *,
    confidence: float | None = None,
) -> Judgement:
    """Judge the canary against the stable arm.

    Args:
        stable: The stable deployment's probe records.
        canary: The canary's probe records.
        policy: Tolerances and settings; the default policy when None.
        confidence: Overrides the policy's confidence of each bound (sequential looks).

    Returns:
        The verdict with every check's estimate, interval, n and reason.

    Raises:
        CanaryInputError: `pairing: paired` is asked for but the prompt ids do not pair.
    """
    policy = policy or CanaryPolicy()
    level = policy.confidence if confidence is None else confidence
    alpha = 1.0 - level
    pairs = _pairs(stable, canary, policy)
    checks: list[Check] = []
    tolerance = math.log1p(policy.latency_tolerance)
    for metric in policy.metrics:
        for interval in latency_intervals(stable, canary, pairs, metric, policy, alpha):
            checks.append(_ratio_check(interval, tolerance))
    checks.append(_error_check(stable, canary, policy, alpha))
    checks.append(_quality_check(stable, canary, pairs, policy, alpha))
    verdict, reason = _overall(checks, level)
    return Judgement(
        verdict=verdict,
        reason=reason,
        design="strata" if pairs is None else "paired",
        confidence=level,
        n_stable=len(stable),
        n_canary=len(canary),
        checks=tuple(checks),
        policy=policy,
    )


def judge_sequential(
    batches: Iterable[tuple[ProbeSet, ProbeSet]],
    policy: CanaryPolicy | None = None,
    *,
    max_looks: int,
) -> SequentialResult:
    """Judge after each (stable, canary) batch on all data so far; stop on PASS or FAIL.

    Every look uses one-sided bounds at alpha / max_looks (Bonferroni over looks): by the
    union bound, a check within tolerance is failed at some look with probability at most
    alpha, whatever the correlation between looks. Simpler than group-sequential boundaries,
    and valid for batches of any size; the price is wider bounds at each look. Looks before
    `min_samples` are INCONCLUSIVE and still spend their share.

    Args:
        batches: Batches in arrival order; at most `max_looks` are read.
        policy: The policy; the default when None.
        max_looks: The fixed number of looks the alpha is split over, >= 1.

    Returns:
        The judgement where it stopped and the number of looks taken.

    Raises:
        CanaryInputError: max_looks < 1, or no batch came.
    """
    if max_looks < 1:
        raise CanaryInputError(f"max_looks {max_looks} must be >= 1: the looks alpha is split over")
    policy = policy or CanaryPolicy()
    level = 1.0 - (1.0 - policy.confidence) / max_looks
    stable_parts: list[ProbeSet] = []
    canary_parts: list[ProbeSet] = []
    result: SequentialResult | None = None
    for look, (stable, canary) in enumerate(batches, start=1):
        stable_parts.append(stable)
        canary_parts.append(canary)
        judgement = judge(
            ProbeSet.concat(stable_parts), ProbeSet.concat(canary_parts), policy, confidence=level
        )
        result = SequentialResult(judgement, look)
        if judgement.verdict != "INCONCLUSIVE" or look == max_looks:
            break
    if result is None:
        raise CanaryInputError("no batches to judge: give at least one (stable, canary) batch")
    return result


def _pairs(
    stable: ProbeSet, canary: ProbeSet, policy: CanaryPolicy
) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions of records with the same prompt_id in both arms, or None to use strata."""
    if policy.pairing == "strata":
        return None
    index_s = {pid: i for i, pid in enumerate(stable.prompt_id)}
    index_c = {pid: i for i, pid in enumerate(canary.prompt_id)}
    unique = len(index_s) == len(stable) and len(index_c) == len(canary)
    common = sorted(index_s.keys() & index_c.keys())
    covered = len(common) >= PAIRING_COVERAGE * max(len(stable), len(canary))
    if unique and covered:
        return np.array([index_s[p] for p in common]), np.array([index_c[p] for p in common])
    if policy.pairing == "paired":
        raise CanaryInputError(
            f"pairing: paired, but {len(common)} prompt ids match of {len(stable)} stable and "
            f"{len(canary)} canary records (ids unique per arm: {unique}); pairing needs unique "
            f"ids matching for {PAIRING_COVERAGE:.0%} of each arm: send the same probe set to "
            "both arms, or set pairing: strata"
        )
    return None


def _ratio_check(interval: Interval, tolerance: float) -> Check:
    """A latency check on the ratio scale from a log-ratio interval."""
    limit = math.exp(tolerance)
    n = min(interval.n_stable, interval.n_canary)
    if interval.estimate is None or interval.lower is None or interval.upper is None:
        verdict: CheckVerdict = (
            "SKIPPED" if "one prompt-length stratum" in interval.note else ("INCONCLUSIVE")
        )
        reason = interval.note + (
            ": the overall median check covers it" if verdict == "SKIPPED" else ""
        )
        return Check(
            interval.name,
            verdict,
            None,
            None,
            limit,
            n,
            interval.n_stable,
            interval.n_canary,
            interval.method,
            reason,
        )
    lower, upper = math.exp(interval.lower), math.exp(interval.upper)
    verdict, reason = read_interval(lower, upper, limit, higher_is_worse=True, unit="ratio")
    if interval.note:
        reason = f"{reason} ({interval.note})"
    return Check(
        interval.name,
        verdict,
        math.exp(interval.estimate),
        (lower, upper),
        limit,
        n,
        interval.n_stable,
        interval.n_canary,
        interval.method,
        reason,
    )


def _error_check(stable: ProbeSet, canary: ProbeSet, policy: CanaryPolicy, alpha: float) -> Check:
    """Error-rate difference (canary minus stable) with Newcombe's hybrid score interval."""
    n_s, n_c = len(stable), len(canary)
    e_s, e_c = int((~stable.ok).sum()), int((~canary.ok).sum())
    limit = policy.error_rate_tolerance
    method = "difference of proportions, Newcombe's hybrid score (Wilson) interval"
    estimate = e_c / n_c - e_s / n_s
    if min(n_s, n_c) < policy.min_samples:
        reason = (
            f"too few requests: {n_s} stable, {n_c} canary, the policy needs {policy.min_samples}"
        )
        return Check(
            "error_rate",
            "INCONCLUSIVE",
            estimate,
            None,
            limit,
            min(n_s, n_c),
            n_s,
            n_c,
            method,
            reason,
        )
    lower, upper = newcombe_interval(e_c, n_c, e_s, n_s, alpha)
    verdict, reason = read_interval(lower, upper, limit, higher_is_worse=True, unit="difference")
    return Check(
        "error_rate",
        verdict,
        estimate,
        (lower, upper),
        limit,
        min(n_s, n_c),
        n_s,
        n_c,
        method,
        reason,
    )


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, alpha: float) -> tuple[float, float]:
    """Bounds on p1 - p2 from Wilson score bounds of each proportion (Newcombe 1998, method 10).

    Chosen over the Wald interval, which collapses to a point when no request failed, the
    usual case; each bound is one-sided at `alpha`.
    """
    z = NormalDist().inv_cdf(1 - alpha)

    def wilson(x: int, n: int) -> tuple[float, float, float]:
        p = x / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return p, max(0.0, centre - half), min(1.0, centre + half)

    p1, l1, u1 = wilson(x1, n1)
    p2, l2, u2 = wilson(x2, n2)
    diff = p1 - p2
    return (
        diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def _quality_check(
    stable: ProbeSet,
    canary: ProbeSet,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    policy: CanaryPolicy,
    alpha: float,
) -> Check:
    """Non-inferiority of mean answer quality (canary minus stable, margin from the policy)."""
    limit = -policy.quality_margin
    if pairs is not None:
        i_s, i_c = pairs
        both = np.isfinite(stable.score[i_s]) & np.isfinite(canary.score[i_c])
        s, c = stable.score[i_s][both], canary.score[i_c][both]
    else:
        s, c = stable.score[np.isfinite(stable.score)], canary.score[np.isfinite(canary.score)]
    if not (np.isfinite(stable.score).any() or np.isfinite(canary.score).any()):
        reason = "no scores in either arm: the probes do not grade answers"
        return Check("quality", "SKIPPED", None, None, limit, 0, 0, 0, "", reason)
    n = min(s.size, c.size)
    binary = bool(np.isin(s, (0.0, 1.0)).all() and np.isin(c, (0.0, 1.0)).all())
    if n < max(policy.min_samples, 0 if binary else MIN_BOOTSTRAP_ITEMS):
        reason = f"too few scored requests: {s.size} stable, {c.size} canary"
        return Check("quality", "INCONCLUSIVE", None, None, limit, n, s.size, c.size, "", reason)
    lower, upper, method = _quality_bounds(s, c, pairs is not None, binary, alpha, policy.seed)
    verdict, reason = read_interval(lower, upper, limit, higher_is_worse=False, unit="difference")
    estimate = float(c.mean() - s.mean())
    return Check(
        "quality", verdict, estimate, (lower, upper), limit, n, s.size, c.size, method, reason
    )


def _quality_bounds(
    s: np.ndarray, c: np.ndarray, paired: bool, binary: bool, alpha: float, seed: int
) -> tuple[float, float, str]:
    """Lower and upper one-sided bounds on mean quality, canary minus stable."""
    if paired and binary:
        gains, losses = int(((c == 1) & (s == 0)).sum()), int(((c == 0) & (s == 1)).sum())
        lower = paired_binary_lower(gains, losses, c.size, alpha)
        upper = -paired_binary_lower(losses, gains, c.size, alpha)
        return lower, upper, "paired, exact Clopper-Pearson bounds on discordant pairs (evals.gate)"
    if paired:
        diffs = c - s
        lower = bootstrap_lower(diffs, alpha, seed=seed)
        upper = -bootstrap_lower(-diffs, alpha, seed=seed)
        return lower, upper, "paired BCa bootstrap of the mean difference (evals.gate)"
    if binary:
        lower, upper = newcombe_interval(int(c.sum()), c.size, int(s.sum()), s.size, alpha)
        return lower, upper, "unpaired, Newcombe's hybrid score interval"
    z = NormalDist().inv_cdf(1 - alpha)
    spread = math.sqrt(c.var(ddof=1) / c.size + s.var(ddof=1) / s.size)
    diff = float(c.mean() - s.mean())
    return diff - z * spread, diff + z * spread, "unpaired, Welch normal interval"


def read_interval(
    lower: float, upper: float, limit: float, *, higher_is_worse: bool, unit: str
) -> tuple[CheckVerdict, str]:
    """FAIL when the interval lies beyond the limit, PASS when inside it, else INCONCLUSIVE."""
    bounds = f"{unit} interval [{lower:.4g}, {upper:.4g}]"
    beyond = lower > limit if higher_is_worse else upper < limit
    inside = upper < limit if higher_is_worse else lower > limit
    side = "above" if higher_is_worse else "below"
    if beyond:
        return "FAIL", f"regression beyond tolerance: {bounds} lies {side} the limit {limit:.4g}"
    if inside:
        return "PASS", f"within tolerance: {bounds} clears the limit {limit:.4g}"
    return "INCONCLUSIVE", f"{bounds} contains the limit {limit:.4g}: more samples needed"


def _overall(checks: list[Check], level: float) -> tuple[Verdict, str]:
    """FAIL if any check FAILs, PASS if all that apply PASS, else INCONCLUSIVE."""
    failed = [c.name for c in checks if c.verdict == "FAIL"]
    if failed:
        return "FAIL", f"regression shown at {level:.4g} confidence by: {', '.join(failed)}"
    open_checks = [c.name for c in checks if c.verdict == "INCONCLUSIVE"]
    if open_checks:
        return "INCONCLUSIVE", f"not yet shown within tolerance: {', '.join(open_checks)}"
    return "PASS", f"every check within tolerance at {level:.4g} confidence"

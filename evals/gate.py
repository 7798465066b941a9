"""The evaluation gate: may a candidate model replace the reference (production) model?

lm-eval scores move with batch size, backend and harness version, so a candidate is never judged
against a number remembered from another run: both models' per-item results, from the same
harness on the same items, are paired item by item, and the gate passes only when a one-sided
confidence bound shows the candidate is no worse than the reference by more than `margin`
(non-inferiority) and, when a `floor` is given, that the candidate's own mean clears it. Each
criterion is tested at the stated confidence and all must pass (an intersection-union test), so
a candidate that truly misses any criterion passes with probability at most `1 - confidence`.

Two interval methods, chosen by the data:

* Binary metrics (every score 0 or 1: acc, exact_match): exact bounds from Clopper-Pearson
  intervals, see `paired_binary_lower`. Exact means the error rate is at most the nominal one
  for every sample size, which matters most where a gate is most tempting to trust: few items.
* Other metrics: a paired BCa bootstrap of the mean difference, see `bootstrap_lower`, refused
  below `MIN_BOOTSTRAP_ITEMS` items, where no bootstrap interval deserves trust.

Example:
    decision = gate_files(Path("cand.jsonl"), Path("prod.jsonl"), "acc", margin=0.01)
    print(decision.to_json())
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from evals.samples import EvalInputError, pair_scores, read_samples

BOOTSTRAP_RESAMPLES = 10_000
"""Resamples per bootstrap: the 5% tail then holds ~500 of them, a Monte Carlo error far below
any margin worth gating on; fewer are refused."""

MIN_BOOTSTRAP_ITEMS = 30
"""Below this many items a bootstrap distribution of a mean takes few distinct values (none at
all when the items agree), so its interval is not trusted and the gate fails instead."""

_CHUNK_ELEMENTS = 1 << 22
"""Resampled values drawn at once (32 MiB of indices): vectorised, yet bounded for large n."""

_NORMAL = NormalDist()


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), the CDF of Beta(a, b) at x.

    Implemented here (Lentz's continued fraction, as in Numerical Recipes 6.4) so the gate needs
    numpy only. I_p(k, n - k + 1) = P(Binomial(n, p) >= k) links it to Clopper-Pearson bounds.

    Args:
        a: First shape parameter, > 0.
        b: Second shape parameter, > 0.
        x: Where to evaluate, in [0, 1].

    Returns:
        I_x(a, b), accurate to about 1e-14.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only left of the mean; use symmetry on the right.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def beta_quantile(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b), by bisection on `regularized_beta` (monotone in x).

    Args:
        q: Probability, in [0, 1].
        a: First shape parameter, > 0.
        b: Second shape parameter, > 0.

    Returns:
        x with I_x(a, b) = q, to within 1e-15.
    """
    low, high = 0.0, 1.0
    while high - low > 1e-15:
        middle = (low + high) / 2.0
        if regularized_beta(a, b, middle) < q:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """Exact one-sided lower bound on a binomial proportion: P(p < bound) <= alpha for every p."""
    if successes == 0:
        return 0.0
    return beta_quantile(alpha, successes, trials - successes + 1)


def clopper_pearson_upper(successes: int, trials: int, alpha: float) -> float:
    """Exact one-sided upper bound on a binomial proportion: P(p > bound) <= alpha for every p."""
    if successes == trials:
        return 1.0
    return beta_quantile(1 - alpha, successes + 1, trials - successes)


def paired_binary_lower(gains: int, losses: int, n: int, alpha: float) -> float:
    """Exact one-sided lower bound on the difference of two paired proportions.

    With `gains` items the candidate gets right and the reference wrong, `losses` the reverse,
    the difference is Delta = p_gain - p_loss = pi * (2 theta - 1), where pi is the share of
    discordant items and theta = p_gain / pi. Given the number of discordant items, gains is
    Binomial(discordant, theta), McNemar's exact model; pi is Binomial(n, pi). The bound is
    pi' * (2 theta_L - 1) with theta_L a Clopper-Pearson lower bound at alpha/2, and pi' the
    Clopper-Pearson upper bound on pi at alpha/2 when 2 theta_L < 1, else the lower one.

    Why it holds: if theta < 1/2 the bound can only exceed Delta when theta < theta_L or
    pi > pi_upper; if theta >= 1/2 only when theta < theta_L or pi < pi_lower (or never, when
    the bound is <= 0 <= Delta). Each case is at most alpha/2 + alpha/2, for every n, pi and
    theta: an exact bound. It is conservative (in simulations at alpha = 0.05 it errs 0.3-2% of
    the time) and so a little wider than Newcombe's hybrid score interval (method 10) or Tango's
    score interval; those are chosen for average coverage and fall below it exactly where
    discordant pairs are few, and a release gate must not pass a regression more often than it
    says. Only discordant pairs inform theta, which is why pairing beats comparing two
    accuracies: items both models get right, or both get wrong, add no noise.

    Args:
        gains: Items where the candidate scores 1 and the reference 0.
        losses: Items where the candidate scores 0 and the reference 1.
        n: All paired items, >= gains + losses.
        alpha: One-sided error rate, 1 - confidence.

    Returns:
        L with P(Delta < L) <= alpha.
    """
    discordant = gains + losses
    theta_lower = clopper_pearson_lower(gains, discordant, alpha / 2)
    slope = 2.0 * theta_lower - 1.0
    if slope < 0:
        return clopper_pearson_upper(discordant, n, alpha / 2) * slope
    return clopper_pearson_lower(discordant, n, alpha / 2) * slope


def bootstrap_lower(
    values: ArrayLike, alpha: float, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> float:
    """One-sided BCa bootstrap lower bound on the mean of `values` (paired differences).

    Resampling whole items keeps each item's pairing, so the correlation between the two models
    narrows the interval as it should. BCa (Efron 1987) rather than the percentile method: it
    corrects the bias and skew of the bootstrap distribution (second-order accurate), which a
    one-sided bound feels more than a two-sided one. The acceleration comes from the jackknife,
    in closed form for a mean. Seeded, so a decision can be reproduced.

    Args:
        values: One value per item, at least 2.
        alpha: One-sided error rate, 1 - confidence.
        resamples: Bootstrap resamples.
        seed: Seed of numpy's default generator.

    Returns:
        The alpha-quantile of the bootstrap means, BCa-adjusted.
    """
    data = np.asarray(values, dtype=float)
    n = data.size
    estimate = float(data.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        means[start:stop] = data[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    # Ties (common with scores on a grid) count half, and must survive float rounding.
    tolerance = 1e-12 * max(1.0, float(np.abs(data).max()))
    below = np.count_nonzero(means < estimate - tolerance)
    tied = np.count_nonzero(np.abs(means - estimate) <= tolerance)
    share = min(max((below + tied / 2) / resamples, 0.5 / resamples), 1 - 0.5 / resamples)
    bias = _NORMAL.inv_cdf(share)
    deviations = data - estimate
    spread = float((deviations**2).sum())
    acceleration = float((deviations**3).sum()) / (6.0 * spread**1.5) if spread > 0 else 0.0
    z = bias + _NORMAL.inv_cdf(alpha)
    denominator = 1.0 - acceleration * z
    if denominator <= 0:  # beyond where BCa is defined: take the most cautious value
        return float(means.min())
    return float(np.quantile(means, _NORMAL.cdf(bias + z / denominator)))


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, and the evidence for it.

    Differences are oriented so that positive means the candidate is better: candidate minus
    reference, or reference minus candidate for a lower-is-better metric.

    Attributes:
        passed: Whether every given criterion passed.
        metric: The per-item metric compared.
        n: Paired items.
        estimate: Mean paired difference (positive: candidate better).
        lower: One-sided lower confidence bound on the difference; None when there are too few
            items for the method to give one.
        upper: None: the gate's interval is one-sided, [lower, +inf).
        confidence: Confidence of each bound, e.g. 0.95.
        margin: Largest tolerated loss (passes when lower > -margin); None if not a criterion.
        floor: Worst acceptable candidate mean (a ceiling when lower is better); None if not a
            criterion.
        candidate_mean: The candidate's mean score.
        reference_mean: The reference's mean score.
        candidate_bound: One-sided confidence bound on the candidate's mean, checked against the
            floor: a lower bound, or an upper one when lower is better; None as for `lower`.
        higher_is_better: The metric's direction.
        n_better: Items where the candidate scored better.
        n_worse: Items where the candidate scored worse.
        method: How the bounds were computed.
        reason: A sentence saying why the gate passed or failed.
    """

    passed: bool
    metric: str
    n: int
    estimate: float
    lower: float | None
    upper: float | None
    confidence: float
    margin: float | None
    floor: float | None
    candidate_mean: float
    reference_mean: float
    candidate_bound: float | None
    higher_is_better: bool
    n_better: int
    n_worse: int
    method: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        """The fields, plus `interval` as [lower, upper] for readers that want one key."""
        return {**asdict(self), "interval": [self.lower, self.upper]}

    def to_json(self) -> str:
        """One JSON object on one line, as `llmflow eval gate` prints it."""
        return json.dumps(self.to_dict())


def gate_files(
    candidate: Path,
    reference: Path,
    metric: str,
    *,
    margin: float | None = None,
    floor: float | None = None,
    confidence: float = 0.95,
    higher_is_better: bool = True,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> GateDecision:
    """Gate a candidate on two lm-eval `--log_samples` files of the same task; see `decide`.

    Raises:
        EvalInputError: A file cannot be used, the files cover different items, or a setting
            is out of range.
    """
    _check_settings(margin, floor, confidence, resamples)
    pairs = pair_scores(
        read_samples(candidate, metric),
        read_samples(reference, metric),
        candidate_label=str(candidate),
        reference_label=str(reference),
    )
    return decide(
        pairs.candidate,
        pairs.reference,
        metric,
        margin=margin,
        floor=floor,
        confidence=confidence,
        higher_is_better=higher_is_better,
        resamples=resamples,
        seed=seed,
    )


def decide(
    candidate: ArrayLike,
    reference: ArrayLike,
    metric: str,
    *,
    margin: float | None = None,
    floor: float | None = None,
    confidence: float = 0.95,
    higher_is_better: bool = True,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> GateDecision:
    """Decide whether the candidate may replace the reference, from paired per-item scores.

    Args:
        candidate: The candidate's score per item.
        reference: The reference's score on the same items, in the same order.
        metric: The metric's name, for the decision's record.
        margin: Non-inferiority margin, >= 0, in the metric's units: passes when the lower
            bound of the paired difference is above -margin. 0 asks for no loss at all.
        floor: The candidate's worst acceptable mean: passes when its confidence bound on
            the mean clears it (at or above; at or below for a lower-is-better metric).
        confidence: Confidence of each one-sided bound, in (0.5, 1).
        higher_is_better: False for metrics such as perplexity or error rates.
        resamples: Bootstrap resamples, for non-binary metrics; at least 10,000.
        seed: Bootstrap seed.

    Returns:
        The decision with its evidence.

    Raises:
        EvalInputError: Neither margin nor floor is given, a setting is out of range, or the
            score lists are empty or of different lengths.
    """
    _check_settings(margin, floor, confidence, resamples)
    cand = np.asarray(candidate, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if cand.ndim != 1 or cand.shape != ref.shape:
        raise EvalInputError(
            f"candidate and reference scores must be two flat lists of the same length, "
            f"not shapes {cand.shape} and {ref.shape}: pair them by doc_id first (pair_scores)"
        )
    n = int(cand.size)
    if n < 1:
        raise EvalInputError("no items to compare (n = 0): the gate needs per-item scores")
    binary = bool(np.isin(cand, (0.0, 1.0)).all() and np.isin(ref, (0.0, 1.0)).all())
    # Work on a score where higher is better; the mirror image 1 - x keeps binary scores binary.
    sign, offset = (1.0, 0.0) if higher_is_better else (-1.0, 1.0 if binary else 0.0)
    cand_up, ref_up = offset + sign * cand, offset + sign * ref
    diffs = cand_up - ref_up
    alpha = 1.0 - confidence
    lower: float | None = None
    bound_up: float | None = None
    if binary:
        lower = paired_binary_lower(int((diffs > 0).sum()), int((diffs < 0).sum()), n, alpha)
        bound_up = clopper_pearson_lower(int(cand_up.sum()), n, alpha)
        method = (
            "exact: Clopper-Pearson bounds on the discordant pairs (paired difference) "
            "and on the candidate's successes (floor)"
        )
    else:
        if n >= MIN_BOOTSTRAP_ITEMS:
            lower = bootstrap_lower(diffs, alpha, resamples=resamples, seed=seed)
            bound_up = bootstrap_lower(cand_up, alpha, resamples=resamples, seed=seed)
        method = f"BCa bootstrap over items: {resamples} resamples, seed {seed}"
    evidence = _Evidence(
        metric=metric,
        n=n,
        estimate=float(diffs.mean()),
        lower=lower,
        candidate_bound=None if bound_up is None else offset + sign * bound_up,
        higher_is_better=higher_is_better,
        level=f"{confidence * 100:g}%",
    )
    checks = _criteria(evidence, margin, floor)
    passed = all(ok for ok, _ in checks)
    return GateDecision(
        passed=passed,
        metric=metric,
        n=n,
        estimate=evidence.estimate,
        lower=lower,
        upper=None,
        confidence=confidence,
        margin=margin,
        floor=floor,
        candidate_mean=float(cand.mean()),
        reference_mean=float(ref.mean()),
        candidate_bound=evidence.candidate_bound,
        higher_is_better=higher_is_better,
        n_better=int((diffs > 0).sum()),
        n_worse=int((diffs < 0).sum()),
        method=method,
        reason=("passed: " if passed else "failed: ") + "; ".join(s for _, s in checks) + ".",
    )


@dataclass(frozen=True)
class _Evidence:
    """The numbers a verdict is read from, in the metric's own units and direction."""

    metric: str
    n: int
    estimate: float
    lower: float | None
    candidate_bound: float | None
    higher_is_better: bool
    level: str


def _criteria(
    evidence: _Evidence, margin: float | None, floor: float | None
) -> list[tuple[bool, str]]:
    """Each given criterion's verdict with the sentence that explains it."""
    e = evidence
    if e.lower is None or e.candidate_bound is None:
        return [
            (
                False,
                f"only {e.n} items of a non-binary metric: a bootstrap interval needs at least "
                f"{MIN_BOOTSTRAP_ITEMS}, so the gate cannot pass on this sample",
            )
        ]
    checks = []
    if margin is not None:
        ok = e.lower > -margin
        checks.append(
            (
                ok,
                f"the lower {e.level} bound of the paired difference in {e.metric} is "
                f"{e.lower:.4g}, {'above' if ok else 'not above'} -margin = {-margin:.4g} "
                f"(estimate {e.estimate:+.4g} over {e.n} items)",
            )
        )
    if floor is not None:
        if e.higher_is_better:
            ok = e.candidate_bound >= floor
            side, word, sense = "lower", "floor", "at or above" if ok else "below"
        else:
            ok = e.candidate_bound <= floor
            side, word, sense = "upper", "ceiling", "at or below" if ok else "above"
        checks.append(
            (
                ok,
                f"the {side} {e.level} bound on the candidate's mean {e.metric} is "
                f"{e.candidate_bound:.4g}, {sense} the {word} {floor:.4g}",
            )
        )
    return checks


def _check_settings(
    margin: float | None, floor: float | None, confidence: float, resamples: int
) -> None:
    """Refuse a gate that would decide nothing, or decide at a meaningless confidence."""
    if margin is None and floor is None:
        raise EvalInputError(
            "the gate has no criterion: give a margin (--margin, non-inferiority against the "
            "reference), a floor (--floor, on the candidate's mean), or both"
        )
    if margin is not None and not (math.isfinite(margin) and margin >= 0):
        raise EvalInputError(
            f"margin {margin} must be a finite number >= 0: the largest loss against the "
            "reference you accept, e.g. 0.01; 0 accepts no loss"
        )
    if floor is not None and not math.isfinite(floor):
        raise EvalInputError(f"floor {floor} must be a finite number, e.g. 0.6")
    if not (0.5 < confidence < 1):
        raise EvalInputError(
            f"confidence {confidence} must lie strictly between 0.5 and 1, e.g. 0.95"
        )
    if resamples < BOOTSTRAP_RESAMPLES:
        raise EvalInputError(
            f"resamples {resamples} is too few for a stable bound: use at least "
            f"{BOOTSTRAP_RESAMPLES}"
        )

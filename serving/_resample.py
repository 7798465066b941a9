"""Bootstrap replicates of sample quantiles without sorting each resample.

A bootstrap replicate of a quantile is usually computed by drawing values and sorting them. Two
shortcuts give the same replicates far faster, which the benchmark's thousands of simulated
canaries need:

* One sample (`quantile_replicates`): the resample's k-th smallest value is the original's
  ceil(m U)-th smallest, with U the k-th smallest of m uniforms, a Beta(k, m - k + 1) variable.
  One beta draw per replicate gives exactly the resampling bootstrap's distribution.
* Paired samples (`resample_counts` + `weighted_quantiles`), where both arms must be resampled
  together: each replicate is a column of counts (how often each pair was drawn), cumulated
  along each arm's sorted order; the quantile is where the running total crosses q.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK_ELEMENTS = 1 << 21
"""Counts held at once (rows x values): vectorised, yet a few tens of MiB however large n is."""


def sample_quantile(ordered: np.ndarray, q: float) -> float:
    """The q-quantile of sorted values as the inverse empirical CDF: the ceil(q m)-th smallest."""
    return float(ordered[_rank(q, ordered.size) - 1])


def quantile_replicates(
    ordered: np.ndarray, q: float, rows: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of `sample_quantile`, drawn directly (see the module docstring).

    Args:
        ordered: The sample, sorted ascending.
        q: Probability in (0, 1).
        rows: Replicates.
        rng: The generator to draw from.

    Returns:
        `rows` values, distributed as the q-quantile of a resample of `ordered`.
    """
    m = ordered.size
    k = _rank(q, m)
    uniform_kth = rng.beta(k, m - k + 1, size=rows)
    index = np.clip(np.ceil(m * uniform_kth).astype(np.int64), 1, m) - 1
    return ordered[index]


def _rank(q: float, m: int) -> int:
    """The rank (1-based) of the q-quantile among m sorted values."""
    return min(m, max(1, math.ceil(q * m - 1e-9)))


def resample_counts(bounds: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap counts, drawn within each stratum so stratum sizes stay fixed.

    Args:
        bounds: Stratum s holds values bounds[s]:bounds[s + 1] (values grouped by stratum).
        rows: Replicates.
        rng: The generator to draw from.

    Returns:
        An (n, rows) array: entry (i, b) is how often value i is drawn in replicate b. Values
        run down the first axis so that cumulating over them adds whole contiguous rows, which
        numpy vectorises (a cumulative sum along the last axis it does not).
    """
    counts = np.empty((int(bounds[-1]), rows))
    offsets = np.arange(rows)[None, :]
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        size = int(high - low)
        if size == 0:
            continue
        flat = (rng.integers(0, size, size=(size, rows)) * rows + offsets).ravel()
        counts[low:high] = np.bincount(flat, minlength=rows * size).reshape(size, rows)
    return counts


def weighted_quantiles(
    values: np.ndarray,
    weights: np.ndarray,
    quantiles: tuple[float, ...],
    *,
    presorted: bool = False,
) -> np.ndarray:
    """Quantiles of weighted values, one row of weights at a time.

    The quantile is the inverse of the weighted empirical CDF (the smallest value whose
    cumulative weight reaches q of the total), the definition that stays a data value and so
    behaves the same for bootstrap replicates and for the point estimate.

    Args:
        values: n values.
        weights: (n, rows) non-negative weights, each column with a positive total.
        quantiles: Probabilities in (0, 1).
        presorted: The values are in ascending order already (saves a gather).

    Returns:
        A (rows, len(quantiles)) array.
    """
    if presorted:
        ordered, running = values, np.cumsum(weights, axis=0)
    else:
        order = np.argsort(values, kind="stable")
        ordered, running = values[order], np.cumsum(weights[order], axis=0)
    total = running[-1:]
    out = np.empty((weights.shape[1], len(quantiles)))
    for column, q in enumerate(quantiles):
        # The tiny slack keeps q * total, computed in floating point, from missing an exact tie.
        index = np.count_nonzero(running < q * total * (1 - 1e-12), axis=0)
        out[:, column] = ordered[np.minimum(index, values.size - 1)]
    return out

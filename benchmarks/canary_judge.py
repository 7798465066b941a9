"""Benchmark: the LLM-aware canary judge against Flagger-, Argo-Rollouts- and Kayenta-style checks.

Simulated probe traffic (seeded), the same simulated canaries for every method in the same run:

* prompt lengths lognormal (median 600 tokens, sigma 0.9, 16..16000); a "shifted mix" canary
  gets prompts twice as long (median 1200) and no regression;
* TTFT = (40 ms + 0.1 ms per prompt token) x lognormal(0, 0.3), and 2% of requests queue
  behind others (x3), in both arms; ITL = 20 ms x (1 + tokens / 32000) x lognormal(0, 0.1);
  0.5% errors; quality 1 with probability 0.8;
* requests arrive at RATE per second per arm (default 2), so n requests are n / (60 RATE)
  one-minute intervals.

Methods (each rolls back = FAIL):

* judge: `serving.judge.judge`, default policy (10% tolerance, 95% confidence), strata design.
* judge-seq: `judge_sequential`, a look every 2 minutes, Bonferroni over 5 looks.
* flagger: every minute the canary's p99 TTFT must stay under a fixed threshold, set at 1.1 x
  the stable p99 under the usual mix; one failed check rolls back.
* argo: every minute the canary's p95 TTFT must stay under 1.1 x the stable p95 (a
  successCondition), failureLimit 2: the third failed measurement rolls back.
* kayenta: one-minute points of mean TTFT, mean ITL and error rate per arm, a two-sided
  Mann-Whitney U test (normal approximation, tie-corrected) per metric at 98% confidence over
  the fixed window; any metric significantly higher on the canary rolls back.

Printed per method: requests per arm (and minutes) to detect a 20% TTFT regression with 95%
power, detection rate of a +50% TTFT regression confined to prompts of 1024+ tokens, false
rollbacks with a shifted prompt mix and no regression, and with no change at all; the last
three at a fixed window of EVAL_MINUTES.

    .venv/bin/python benchmarks/canary_judge.py            # the full run (about 1-2 minutes)
    .venv/bin/python benchmarks/canary_judge.py --quick    # a smoke run for the tests
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.judge import judge, judge_sequential  # noqa: E402
from serving.policy import CanaryPolicy  # noqa: E402
from serving.records import ProbeSet  # noqa: E402

GRID = (60, 120, 180, 240, 360, 480, 600, 720, 960, 1200, 1800, 2400, 3600, 4800, 7200)
"""Requests per arm tried when searching for 95% power (stops at the first that reaches it)."""
LOOKS = 5
LOOK_MINUTES = 2
LONG_PROMPT = 1024
KAYENTA_ALPHA = 0.02


@dataclass(frozen=True)
class Scenario:
    """How the canary differs from the stable arm."""

    slowdown: float = 1.0
    long_slowdown: float = 1.0
    canary_median_tokens: float = 600.0


REGRESSION = Scenario(slowdown=1.2)
LONG_ONLY = Scenario(long_slowdown=1.5)
SHIFTED_MIX = Scenario(canary_median_tokens=1200.0)
NO_CHANGE = Scenario()


@dataclass(frozen=True)
class Arm:
    """One arm's simulated requests, in arrival order."""

    tokens: np.ndarray
    ttft: np.ndarray
    itl: np.ndarray
    ok: np.ndarray
    score: np.ndarray

    def probes(self) -> ProbeSet:
        return ProbeSet.from_columns(
            prompt_tokens=self.tokens,
            ttft_s=self.ttft,
            itl_s=self.itl,
            ok=self.ok,
            score=self.score,
        )


def simulate(
    n: int, rng: np.random.Generator, median_tokens: float = 600.0, slowdown: float = 1.0,
    long_slowdown: float = 1.0,
) -> Arm:  # fmt: skip
    tokens = np.clip(np.round(rng.lognormal(math.log(median_tokens), 0.9, n)), 16, 16000)
    ttft = (0.04 + 1e-4 * tokens) * rng.lognormal(0.0, 0.3, n) * slowdown
    ttft = np.where(rng.random(n) < 0.02, 3 * ttft, ttft)
    ttft = np.where(tokens >= LONG_PROMPT, long_slowdown * ttft, ttft)
    itl = 0.02 * (1 + tokens / 32000) * rng.lognormal(0.0, 0.1, n)
    ok = rng.random(n) >= 0.005
    score = np.where(ok, (rng.random(n) < 0.8).astype(float), np.nan)
    return Arm(tokens, np.where(ok, ttft, np.nan), np.where(ok, itl, np.nan), ok, score)


def pair(n: int, scenario: Scenario, rng: np.random.Generator) -> tuple[Arm, Arm]:
    stable = simulate(n, rng)
    canary = simulate(
        n, rng, scenario.canary_median_tokens, scenario.slowdown, scenario.long_slowdown
    )
    return stable, canary


@dataclass(frozen=True)
class Thresholds:
    """Fixed thresholds an operator would read off the stable dashboard (usual prompt mix)."""

    p99: float
    p95: float

    @classmethod
    def from_stable(cls, rng: np.random.Generator) -> Thresholds:
        ttft = simulate(200_000, rng).ttft
        ttft = ttft[np.isfinite(ttft)]
        return cls(
            p99=1.1 * float(np.quantile(ttft, 0.99)), p95=1.1 * float(np.quantile(ttft, 0.95))
        )


def minutes(arm: Arm, per_minute: int) -> list[slice]:
    return [slice(i, i + per_minute) for i in range(0, arm.tokens.size, per_minute)]


def flagger(stable: Arm, canary: Arm, per_minute: int, limits: Thresholds) -> bool:
    for window in minutes(canary, per_minute):
        ttft = canary.ttft[window]
        ttft = ttft[np.isfinite(ttft)]
        if ttft.size and np.quantile(ttft, 0.99) > limits.p99:
            return True
    return False


def argo(
    stable: Arm, canary: Arm, per_minute: int, limits: Thresholds, failure_limit: int = 2
) -> bool:
    failures = 0
    for window in minutes(canary, per_minute):
        ttft = canary.ttft[window]
        ttft = ttft[np.isfinite(ttft)]
        failures += bool(ttft.size and np.quantile(ttft, 0.95) > limits.p95)
        if failures > failure_limit:
            return True
    return False


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test, normal approximation with ties."""
    nx, ny = x.size, y.size
    if nx == 0 or ny == 0:
        return 1.0
    both = np.concatenate([x, y])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    u = ranks[:nx].sum() - nx * (nx + 1) / 2.0
    total = nx + ny
    ties = float((counts**3 - counts).sum()) / (total * (total - 1)) if total > 1 else 0.0
    variance = nx * ny / 12.0 * ((total + 1) - ties)
    if variance <= 0:
        return 1.0
    z = (abs(u - nx * ny / 2.0) - 0.5) / math.sqrt(variance)
    return 2.0 * (1.0 - NormalDist().cdf(max(z, 0.0)))


def kayenta(stable: Arm, canary: Arm, per_minute: int, limits: Thresholds) -> bool:
    def points(arm: Arm) -> dict[str, np.ndarray]:
        wins = minutes(arm, per_minute)
        return {
            "ttft": np.array([np.nanmean(arm.ttft[w]) for w in wins]),
            "itl": np.array([np.nanmean(arm.itl[w]) for w in wins]),
            "errors": np.array([1.0 - arm.ok[w].mean() for w in wins]),
        }

    base, cand = points(stable), points(canary)
    for metric in base:
        p = mann_whitney_p(cand[metric], base[metric])
        if p < KAYENTA_ALPHA and np.median(cand[metric]) > np.median(base[metric]):
            return True
    return False


def ours(stable: Arm, canary: Arm, per_minute: int, limits: Thresholds) -> bool:
    return judge(stable.probes(), canary.probes(), POLICY).verdict == "FAIL"


def ours_sequential(stable: Arm, canary: Arm, per_minute: int, limits: Thresholds) -> bool:
    batches = [
        (_slice(stable, w).probes(), _slice(canary, w).probes())
        for w in minutes(stable, LOOK_MINUTES * per_minute)
    ]
    result = judge_sequential(batches, POLICY, max_looks=LOOKS)
    return result.judgement.verdict == "FAIL"


def _slice(arm: Arm, window: slice) -> Arm:
    return Arm(
        arm.tokens[window], arm.ttft[window], arm.itl[window], arm.ok[window], arm.score[window]
    )


POLICY = CanaryPolicy()
SEQUENTIAL = f"judge-seq ({LOOKS} looks)"
Method = Callable[[Arm, Arm, int, Thresholds], bool]
METHODS: dict[str, Method] = {
    "judge": ours,
    SEQUENTIAL: ours_sequential,
    "flagger (p99 < fixed)": flagger,
    "argo (p95, failureLimit 2)": argo,
    "kayenta (MW, 98%)": kayenta,
}


def rollback_rates(
    n: int, scenario: Scenario, reps: int, seed: int, per_minute: int, limits: Thresholds,
    names: list[str],
) -> dict[str, float]:  # fmt: skip
    """Share of `reps` simulated canaries each method rolls back; same canaries for all."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(names, 0)
    for _ in range(reps):
        stable, canary = pair(n, scenario, rng)
        for name in names:
            hits[name] += METHODS[name](stable, canary, per_minute, limits)
    return {name: hits[name] / reps for name in names}


def samples_for_power(
    reps: int, seed: int, per_minute: int, limits: Thresholds, grid: tuple[int, ...]
) -> dict[str, int | None]:
    """Smallest n in the grid where each method detects the 20% regression in 95% of runs."""
    found: dict[str, int | None] = dict.fromkeys(METHODS)
    for n in grid:
        # The sequential judge stops after LOOKS looks: a longer window adds nothing.
        capped = {SEQUENTIAL} if n > LOOKS * LOOK_MINUTES * per_minute else set()
        open_names = [name for name, value in found.items() if value is None and name not in capped]
        if not open_names:
            break
        rates = rollback_rates(n, REGRESSION, reps, seed + n, per_minute, limits, open_names)
        for name, rate in rates.items():
            if rate >= 0.95:
                found[name] = n
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates: a smoke run")
    parser.add_argument("--reps", type=int, default=100, help="replicates per power point")
    parser.add_argument("--null-reps", type=int, default=400, help="replicates per null rate")
    parser.add_argument("--rate", type=float, default=2.0, help="requests/s per arm")
    parser.add_argument("--eval-minutes", type=int, default=10, help="window of the rate columns")
    parser.add_argument("--seed", type=int, default=20261128)
    args = parser.parse_args(argv)
    reps, null_reps, grid = args.reps, args.null_reps, GRID
    if args.quick:
        reps, null_reps, grid = 8, 8, (240, 720)
    per_minute = max(1, round(60 * args.rate))
    n_eval = (3 if args.quick else args.eval_minutes) * per_minute
    started = time.perf_counter()
    limits = Thresholds.from_stable(np.random.default_rng(args.seed))
    names = list(METHODS)
    power = samples_for_power(reps, args.seed, per_minute, limits, grid)
    long_rates = rollback_rates(n_eval, LONG_ONLY, reps, args.seed + 1, per_minute, limits, names)
    mix_rates = rollback_rates(
        n_eval, SHIFTED_MIX, null_reps, args.seed + 2, per_minute, limits, names
    )
    same_rates = rollback_rates(
        n_eval, NO_CHANGE, null_reps, args.seed + 3, per_minute, limits, names
    )
    print(
        f"canary judge benchmark: {reps} replicates per power point, {null_reps} per false-"
        f"rollback rate, {args.rate:g} requests/s per arm, rate columns at {n_eval} requests "
        f"({n_eval / per_minute:g} min), seed {args.seed}"
    )
    header = (
        "| method | requests for 95% power (20% TTFT) | minutes | long-prompt regression "
        "detected | false rollback, shifted mix | false rollback, no change |"
    )
    print(header)
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        n = power[name]
        shown = f">{grid[-1]}" if n is None else str(n)
        mins = f">{grid[-1] / per_minute:g}" if n is None else f"{n / per_minute:g}"
        print(
            f"| {name} | {shown} | {mins} | {long_rates[name]:.1%} | {mix_rates[name]:.1%} | "
            f"{same_rates[name]:.1%} |"
        )
    ours_n = power["judge"]
    for name in names[2:]:
        other = power[name]
        if ours_n is None or other is None:
            ratio = "n/a (a method never reached 95% power in the grid)"
        else:
            ratio = f"{ours_n / other:.2f}x"
        print(f"ratio of samples judge / {name}: {ratio}")
    beaten = ours_n is not None and all(
        power[name] is None or ours_n < (power[name] or 0) for name in names[2:]
    )
    print(f"goal fewer samples than every baseline: {'met' if beaten else 'not met'}")
    worst = max(mix_rates["judge"], same_rates["judge"])
    print(
        f"goal false rollbacks <= 1% (judge): {'met' if worst <= 0.01 else 'not met'} ({worst:.1%})"
    )
    print(f"elapsed: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

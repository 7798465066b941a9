"""One canary stage's analysis: probe both versions, read Prometheus, judge, decide.

The probe sends the same prompts to stable and canary (directly to each Service, so both arms
answer the same prompts in the same time window) in batches; after each batch the judge looks
at everything so far, sequentially (alpha split over the looks), and stops at the first PASS or
FAIL. A stage gets one base batch plus `extensions` more when it is still INCONCLUSIVE.

Prometheus adds live traffic: per-version error ratio and latency histograms. Those checks can
fail a canary (a regression users are seeing) but never pass it alone; and an analysis that
cannot read Prometheus, or finds no series for a version, is a failed analysis: the canary is
rolled back rather than promoted on half the evidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving.judge import Check, Judgement, Verdict, judge
from serving.metrics import ArmMetrics, MetricSource, MetricsUnavailable, live_checks
from serving.policy import CanaryPolicy
from serving.probe import probe_arms, write_records
from serving.probe_sets import ProbePrompt
from serving.records import ProbeSet, read_probes

#: Unjudged requests per version before a stage's first batch.
WARM_UP_PER_ARM = 12


@dataclass(frozen=True)
class ProbeSettings:
    """How each batch is probed (the spec's `serving.probe`)."""

    model: str
    requests: int
    concurrency: int
    max_tokens: int
    timeout_s: float


@dataclass
class StageAnalysis:
    """What a stage decided and the evidence for it.

    Attributes:
        stage: Percent of live traffic on the canary.
        verdict: PASS, FAIL or INCONCLUSIVE: the stage's decision.
        reason: One sentence: which evidence decided it.
        looks: Probe batches judged.
        judgement: The probe judgement at the last look.
        live: Checks from Prometheus (empty when it could not be read).
        live_error: Why Prometheus could not be read, if it could not.
        stable_metrics: Prometheus' view of the stable version.
        canary_metrics: Prometheus' view of the canary.
        stable: All stable probe records of the stage.
        canary: All canary probe records of the stage.
    """

    stage: int
    verdict: Verdict
    reason: str
    looks: int
    judgement: Judgement
    stable: ProbeSet
    canary: ProbeSet
    live: list[Check] = field(default_factory=list)
    live_error: str | None = None
    stable_metrics: ArmMetrics | None = None
    canary_metrics: ArmMetrics | None = None


def analyse_stage(
    stage: int,
    urls: tuple[str, str],
    versions: tuple[str, str],
    prompts: Sequence[ProbePrompt],
    settings: ProbeSettings,
    policy: CanaryPolicy,
    *,
    extensions: int,
    metrics: Callable[[float], MetricSource] | None,
    records_dir: Path,
    offset: int = 0,
    settle_s: float = 0.0,
) -> StageAnalysis:
    """Probe, judge and read Prometheus for one canary stage.

    Args:
        stage: Percent of live traffic on the canary.
        urls: Base URLs of the (stable, canary) Services.
        versions: Version labels of (stable, canary), as Prometheus sees them.
        prompts: The probe set.
        settings: Requests per batch, concurrency, tokens, timeout, served model name.
        policy: The judge's tolerances.
        extensions: Extra batches when a look is INCONCLUSIVE.
        metrics: Where live metrics come from, given the window in seconds they should cover
            (the stage so far); None to judge the probe alone.
        records_dir: Where the probe records are written (`stable-<stage>.jsonl`, ...).
        offset: First prompt of the stage, so successive stages probe different prompts.
        settle_s: Wait before reading metrics, so the last requests are scraped (two scrape
            intervals).
    """
    warm_up(urls, prompts, settings)
    if metrics is not None:
        time.sleep(settle_s)  # the warm-up's last requests are scraped before the window opens
    started = time.monotonic()
    paths = (records_dir / f"stable-{stage}.jsonl", records_dir / f"canary-{stage}.jsonl")
    judgement, arms, looks = probe_batches(
        urls,
        prompts,
        settings,
        policy,
        extensions=extensions,
        paths=paths,
        offset=offset,
        decided=lambda j: j.verdict != "INCONCLUSIVE",
    )
    result = StageAnalysis(
        stage=stage,
        verdict=judgement.verdict,
        reason=f"probe: {judgement.reason}",
        looks=looks,
        judgement=judgement,
        stable=arms[0],
        canary=arms[1],
    )
    if metrics is not None:
        time.sleep(settle_s)  # the batches' last requests are scraped
        _add_live(result, metrics(time.monotonic() - started), versions, policy)
    return result


def probe_batches(
    urls: tuple[str, str],
    prompts: Sequence[ProbePrompt],
    settings: ProbeSettings,
    policy: CanaryPolicy,
    *,
    extensions: int,
    paths: tuple[Path, Path],
    decided: Callable[[Judgement], bool],
    offset: int = 0,
) -> tuple[Judgement, tuple[ProbeSet, ProbeSet], int]:
    """Probe both versions in batches until `decided` holds; (judgement, arms, batches).

    At most 1 + `extensions` batches, each judged on every record so far. The confidence is
    split over those looks (Bonferroni), so looking again after an INCONCLUSIVE batch does
    not raise the chance of a wrong verdict. Records go to `paths` (stable, candidate), in
    the format `llmflow canary judge` reads.
    """
    max_looks = 1 + extensions
    level = 1.0 - (1.0 - policy.confidence) / max_looks
    records: tuple[list[dict[str, object]], list[dict[str, object]]] = ([], [])
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    looks = 0
    while True:
        stable, candidate = probe_arms(
            urls[0],
            urls[1],
            prompts,
            model=settings.model,
            requests=settings.requests,
            concurrency=settings.concurrency,
            max_tokens=settings.max_tokens,
            timeout_s=settings.timeout_s,
            offset=offset + looks * settings.requests,
        )
        looks += 1
        records[0].extend(stable)
        records[1].extend(candidate)
        arms = (_as_probe_set(records[0], paths[0]), _as_probe_set(records[1], paths[1]))
        judgement = judge(arms[0], arms[1], policy, confidence=level)
        if decided(judgement) or looks == max_looks:
            return judgement, arms, looks


def warm_up(urls: tuple[str, str], prompts: Sequence[ProbePrompt], settings: ProbeSettings) -> None:
    """Send both versions a few requests that are not judged.

    A fresh vLLM server answers its first requests, and the first of each new prompt shape,
    several times slower than the rest (kernels and allocations made on first use); judging
    them would fail any new canary against a warm stable. Prompts are spread over lengths.
    """
    by_length = sorted(prompts, key=lambda p: len(p.prompt))
    count = min(len(by_length), WARM_UP_PER_ARM)
    chosen = [by_length[round(i * (len(by_length) - 1) / max(count - 1, 1))] for i in range(count)]
    probe_arms(
        urls[0],
        urls[1],
        chosen,
        model=settings.model,
        requests=count,
        concurrency=settings.concurrency,
        max_tokens=settings.max_tokens,
        timeout_s=settings.timeout_s,
    )


def _add_live(
    result: StageAnalysis, metrics: MetricSource, versions: tuple[str, str], policy: CanaryPolicy
) -> None:
    """Fold Prometheus' checks into the stage's verdict: they can fail it, never pass it."""
    try:
        result.stable_metrics = metrics.arm(versions[0])
        result.canary_metrics = metrics.arm(versions[1])
    except MetricsUnavailable as exc:
        result.live_error = str(exc)
        result.verdict = "FAIL"
        result.reason = f"analysis failed, rolling back: {exc}"
        return
    result.live = live_checks(result.stable_metrics, result.canary_metrics, policy)
    failed = [c.name for c in result.live if c.verdict == "FAIL"]
    if failed:
        live = f"live traffic (Prometheus) shows a regression: {', '.join(failed)}"
        result.reason = f"{result.reason}; {live}" if result.verdict == "FAIL" else live
        result.verdict = "FAIL"


def _as_probe_set(rows: list[dict[str, object]], path: Path) -> ProbeSet:
    """Records as the judge reads them, through the same file format `canary judge` reads."""
    write_records(rows, path)
    return read_probes(path)

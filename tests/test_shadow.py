"""The shadow stage: its spec section, its distribution-free latency bounds, its verdict, and
its place in the deploy pipeline (the run itself: tests/test_deploy_pipeline.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from serving.judge import Check
from serving.metrics import ArmMetrics, live_error_check
from serving.policy import CanaryPolicy
from serving.shadow import (
    ShadowAnalysis,
    decide,
    evidence,
    latency_check,
    quantile_bounds,
    shadow_report,
)
from workflows.exceptions import SpecError
from workflows.pipelines import get_pipeline
from workflows.spec import ReleaseSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
#: Buckets 25% apart from 5 ms to 20 s, as releases/tiny.yaml gives vLLM.
FINE = sorted(
    {round(m * 10**e, 6) for e in range(-3, 2) for m in (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8)}
)
FINE = [b for b in FINE if 0.005 <= b <= 20]
#: vLLM's default whole-request buckets (its first bucket ends at 0.3 s).
DEFAULT_E2E = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0]


def histogram(samples: np.ndarray, bounds: list[float]) -> list[tuple[float, int]]:
    """Cumulative bucket counts, as Prometheus keeps them (last bound +Inf)."""
    edges = [*bounds, math.inf]
    return [(b, int((samples <= b).sum())) for b in edges]


def arm(requests: int, errors: int) -> ArmMetrics:
    return ArmMetrics(
        requests,
        errors,
        errors / requests if requests else None,
        None,
        None,
        None,
        None,
        None,
        None,
        "test",
    )


POLICY = CanaryPolicy(
    latency_tolerance=2.0,
    quantiles=[0.5],
    metrics=["ttft_s", "e2e_s"],
    error_rate_tolerance=0.05,
    min_samples=30,
)


# --- the spec ---------------------------------------------------------------------------


def spec_with(shadow: Any) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "releases" / "tiny.yaml").read_text())
    data["serving"]["shadow"] = shadow
    return data


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        ({"fraction": 0.5}, "exactly one of duration"),
        ({"fraction": 0.5, "duration": "5m", "requests": 10}, "exactly one of duration"),
        ({"fraction": 0, "requests": 10}, r"fraction 0.0 must lie in \(0, 1\]"),
        ({"fraction": 1.5, "requests": 10}, r"fraction 1.5 must lie in \(0, 1\]"),
        ({"fraction": 0.5, "duration": "soon"}, "duration"),
        ({"fraction": 0.5, "requests": 0}, "greater than or equal to 1"),
        ({"fraction": 0.5, "requests": 10, "window": "5m"}, "window"),
    ],
)
def test_bad_shadow_sections_are_refused_naming_the_field(shadow: Any, message: str) -> None:
    with pytest.raises((SpecError, ValueError), match=message) as info:
        ReleaseSpec.model_validate(spec_with(shadow))
    assert "shadow" in str(info.value)


def test_the_example_spec_shadows_before_the_canary() -> None:
    spec = load_spec(ROOT / "releases" / "tiny.yaml")
    assert spec.serving is not None and spec.serving.shadow is not None
    assert 0 < spec.serving.shadow.fraction <= 1


# --- distribution-free quantile bounds --------------------------------------------------


def test_quantile_bounds_cover_the_true_quantile_at_their_confidence() -> None:
    rng = np.random.default_rng(7)
    alpha, misses_low, misses_high, trials = 0.05, 0, 0, 400
    true_median = math.exp(math.log(0.05))  # lognormal(log 0.05, 0.5): median 0.05 s
    for _ in range(trials):
        samples = rng.lognormal(math.log(0.05), 0.5, size=60)
        low, high = quantile_bounds(histogram(samples, FINE), 0.5, alpha)
        misses_low += low > true_median
        misses_high += high < true_median
    # Each one-sided bound misses at most alpha of the time (binomial slack for 400 trials).
    assert misses_low / trials <= alpha + 0.03
    assert misses_high / trials <= alpha + 0.03


def test_quantile_bounds_are_bucket_edges_and_widen_with_coarse_buckets() -> None:
    samples = np.full(100, 0.1)
    low, high = quantile_bounds(histogram(samples, FINE), 0.5, 0.025)
    assert (low, high) == (0.08, 0.1)  # the bucket (0.08, 0.1] holds every sample
    low, high = quantile_bounds(histogram(samples, DEFAULT_E2E), 0.5, 0.025)
    assert (low, high) == (0.0, 0.3)  # vLLM's first whole-request bucket starts at 0
    assert quantile_bounds([(math.inf, 0)], 0.5, 0.025) == (0.0, math.inf)


# --- checks and the verdict -------------------------------------------------------------


def test_a_candidate_that_queues_fails_and_an_equal_one_passes() -> None:
    rng = np.random.default_rng(1)
    stable = histogram(rng.lognormal(math.log(0.04), 0.3, 300), FINE)
    queued = histogram(rng.lognormal(math.log(1.5), 0.5, 150), FINE)
    equal = histogram(rng.lognormal(math.log(0.04), 0.3, 150), FINE)
    failed = latency_check("ttft_s", 0.5, stable, queued, POLICY)
    assert failed.verdict == "FAIL" and failed.name == "live_ttft_p50"
    assert failed.interval is not None and failed.interval[0] > 3
    passed = latency_check("ttft_s", 0.5, stable, equal, POLICY)
    assert passed.verdict == "PASS", passed.reason
    assert passed.interval is not None and passed.interval[1] < 3


def test_coarse_buckets_or_few_requests_are_inconclusive_and_say_why() -> None:
    rng = np.random.default_rng(2)
    fast = rng.lognormal(math.log(0.1), 0.3, 200)
    coarse = latency_check(
        "e2e_s", 0.5, histogram(fast, DEFAULT_E2E), histogram(fast, DEFAULT_E2E), POLICY
    )
    assert coarse.verdict == "INCONCLUSIVE"
    assert "--custom-histogram-buckets" in coarse.reason
    # A candidate inside the first bucket (lower edge 0): nothing bounds its ratio from below.
    first = latency_check(
        "e2e_s", 0.5, histogram(fast * 6, DEFAULT_E2E), histogram(fast, DEFAULT_E2E), POLICY
    )
    assert first.verdict in ("PASS", "INCONCLUSIVE") and first.interval is not None
    assert first.interval[0] == 0.0
    few = latency_check("e2e_s", 0.5, histogram(fast, FINE), histogram(fast[:10], FINE), POLICY)
    assert few.verdict == "INCONCLUSIVE" and "too few live requests" in few.reason


def test_error_rate_fails_on_many_errors_and_passes_on_none() -> None:
    def verdict(stable: ArmMetrics, candidate: ArmMetrics, decides: bool) -> str:
        return live_error_check(stable, candidate, POLICY, decides=decides).verdict

    # In a shadow live traffic decides; in a canary stage it may only veto.
    assert verdict(arm(400, 0), arm(200, 60), decides=True) == "FAIL"
    assert verdict(arm(400, 0), arm(200, 0), decides=True) == "PASS"
    assert verdict(arm(400, 0), arm(20, 0), decides=True) == "INCONCLUSIVE"
    assert verdict(arm(400, 0), arm(200, 60), decides=False) == "FAIL"
    assert verdict(arm(400, 0), arm(200, 0), decides=False) == "SKIPPED"
    assert verdict(arm(400, 0), arm(20, 0), decides=False) == "SKIPPED"


def check(name: str, verdict: str) -> Check:
    return Check(name, verdict, None, None, 1.0, 1, 1, 1, "", "")  # type: ignore[arg-type]


def test_decide_needs_every_check_and_live_traffic() -> None:
    live = [check("live_error_rate", "PASS"), check("live_ttft_p50", "PASS")]
    assert decide(live, check("quality", "PASS"), arm(100, 0))[0] == "PASS"
    assert decide(live, check("quality", "SKIPPED"), arm(100, 0))[0] == "PASS"
    assert decide(live, check("quality", "FAIL"), arm(100, 0)) == (
        "FAIL",
        "regression shown by: quality",
    )
    verdict, reason = decide(
        [check("live_error_rate", "PASS"), check("live_ttft_p50", "INCONCLUSIVE")],
        check("quality", "PASS"),
        arm(100, 0),
    )
    assert verdict == "INCONCLUSIVE" and "live_ttft_p50" in reason
    verdict, reason = decide(live, check("quality", "PASS"), arm(0, 0))
    assert verdict == "INCONCLUSIVE" and "no live traffic reached the candidate" in reason


def test_the_report_is_strict_json_with_unbounded_ends_as_null() -> None:
    rng = np.random.default_rng(3)
    fast = rng.lognormal(math.log(0.1), 0.3, 200)
    # Stable inside the first bucket (lower edge 0): nothing bounds the ratio from above.
    first = latency_check(
        "e2e_s", 0.5, histogram(fast, DEFAULT_E2E), histogram(fast * 6, DEFAULT_E2E), POLICY
    )
    assert first.interval is not None and math.isinf(first.interval[1])
    analysis = ShadowAnalysis(
        "INCONCLUSIVE", "not shown", 0.5, 0.0, 60.0, live=[first], candidate=arm(200, 0)
    )
    report = json.loads(json.dumps(shadow_report(analysis), allow_nan=False))
    assert report["live"]["checks"]["live_e2e_p50"]["interval"][1] is None
    assert report["window"]["seconds"] == 60.0
    # The release record's evidence, too.
    kept = json.loads(json.dumps(evidence(analysis), allow_nan=False))
    assert kept["checks"]["live_e2e_p50"]["interval"][1] is None


# --- the pipeline -----------------------------------------------------------------------


def tasks(spec: ReleaseSpec) -> dict[str, dict[str, Any]]:
    workflow = get_pipeline("deploy").build(spec).to_dict()
    main = next(t for t in workflow["spec"]["templates"] if t["name"] == "main")
    return {t["name"]: t for t in main["dag"]["tasks"]}


def test_the_shadow_runs_between_the_candidates_start_and_the_first_canary_stage() -> None:
    spec = load_spec(ROOT / "releases" / "tiny.yaml")
    dag = tasks(spec)
    assert "deploy-canary.Succeeded" in dag["start-shadow"]["depends"]
    assert dag["analyse-shadow"]["depends"] == "start-shadow.Succeeded"
    assert dag["stage-10"]["depends"] == "analyse-shadow.Succeeded"
    for task in ("start-shadow", "analyse-shadow"):
        assert f"{task}.Failed" in dag["rollback"]["depends"]
    arguments = {p["name"]: p["value"] for p in dag["analyse-shadow"]["arguments"]["parameters"]}
    assert arguments["fraction"] == "0.5" and arguments["shadow-requests"] == "150"
    assert arguments["window-timeout"] == "600"


def test_without_a_shadow_section_the_canary_starts_at_once() -> None:
    spec = load_spec(ROOT / "releases" / "tiny.yaml")
    assert spec.serving is not None
    plain = spec.model_copy(update={"serving": spec.serving.model_copy(update={"shadow": None})})
    dag = tasks(plain)
    assert "start-shadow" not in dag and "analyse-shadow" not in dag
    assert dag["stage-10"]["depends"] == "deploy-canary.Succeeded && apply-service-canary.Succeeded"


def test_a_shadow_without_prometheus_fails_at_once_saying_why(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steps.shadow import analyse_shadow

    monkeypatch.setenv("hera__outputs_directory", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        analyse_shadow(
            stable_url="http://tiny-llama-stable.llmflow.svc:8000",
            candidate_url="http://tiny-llama-canary.llmflow.svc:8000",
            served_name="tiny-llama",
            stable_version="a",
            candidate_version="b",
            prometheus_url="",
            fraction=0.5,
            requests_=10,
        )
    assert exited.value.code == 1
    assert "prometheus-url is empty" in caplog.records[-1].getMessage()
    # The release records why the candidate stopped at its shadow.
    saved = tmp_path / "parameters"
    assert (saved / "verdict").read_text() == "FAIL"
    recorded = json.loads((saved / "evidence").read_text())
    assert recorded["verdict"] == "FAIL" and "prometheus-url" in recorded["reason"]

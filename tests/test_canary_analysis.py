"""A stage's decision from the probe and the live metrics, and its report, without servers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving.analysis import StageAnalysis, _add_live
from serving.canary_report import write_stage_report
from serving.judge import judge
from serving.metrics import ProbeSource
from serving.policy import CanaryPolicy
from serving.records import ProbeSet

POLICY = CanaryPolicy(error_rate_tolerance=0.05)


def arm(seed: int, n: int = 300, slow: float = 1.0, errors: int = 0) -> ProbeSet:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(10, 400, n)
    ok = np.ones(n, bool)
    ok[:errors] = False
    ttft = (0.02 + tokens * 1e-4) * rng.lognormal(0, 0.1, n) * slow
    return ProbeSet.from_columns(
        prompt_id=[f"p{i}" for i in range(n)],
        prompt_tokens=tokens,
        ttft_s=np.where(ok, ttft, np.nan),
        itl_s=np.where(ok, 0.01 * rng.lognormal(0, 0.1, n), np.nan),
        e2e_s=np.where(ok, ttft + 0.15, np.nan),
        ok=ok,
        score=np.where(ok, 1.0, np.nan),
    )


def analysis(stable: ProbeSet, canary: ProbeSet) -> StageAnalysis:
    judgement = judge(stable, canary, POLICY)
    return StageAnalysis(
        stage=50,
        verdict=judgement.verdict,
        reason=f"probe: {judgement.reason}",
        looks=1,
        judgement=judgement,
        stable=stable,
        canary=canary,
    )


def test_live_errors_fail_a_canary_the_probe_passed() -> None:
    stable, canary = arm(1), arm(1)
    result = analysis(stable, canary)
    assert result.verdict == "PASS"
    live = ProbeSource({"v1": arm(2), "v2": arm(3, errors=60)})
    _add_live(result, live, ("v1", "v2"), POLICY)
    assert result.verdict == "FAIL"
    assert "live traffic (Prometheus) shows a regression: live_error_rate" in result.reason


def test_live_metrics_that_agree_leave_the_probe_verdict() -> None:
    result = analysis(arm(1), arm(1))
    _add_live(result, ProbeSource({"v1": arm(2), "v2": arm(3)}), ("v1", "v2"), POLICY)
    assert result.verdict == "PASS"
    assert result.live and all(c.verdict != "FAIL" for c in result.live)


def test_metrics_that_cannot_be_read_fail_the_analysis() -> None:
    result = analysis(arm(1), arm(1))
    _add_live(result, ProbeSource({"v1": arm(2)}), ("v1", "v2"), POLICY)
    assert result.verdict == "FAIL"
    assert result.reason.startswith("analysis failed, rolling back: no probe records for")
    assert result.live_error and "'v2'" in result.live_error


def test_the_stage_report_holds_the_verdict_and_every_check(tmp_path: Path) -> None:
    result = analysis(arm(1), arm(1, slow=3.0))
    assert result.verdict == "FAIL"
    data_path, chart = write_stage_report(tmp_path, result)
    data = json.loads(data_path.read_text())
    assert data["stage"] == 50 and data["verdict"] == "FAIL"
    assert data["probe"]["checks"]["ttft_p50"]["verdict"] == "FAIL"
    assert data["live"] == {"error": None, "checks": {}, "stable": None, "canary": None}
    assert chart.name == "stage-50.png" and chart.read_bytes().startswith(b"\x89PNG")

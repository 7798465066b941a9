"""The canary judge: verdicts on simulated traffic, input checks, the CLI and its benchmark."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from serving.judge import judge, judge_sequential, newcombe_interval
from serving.policy import CanaryPolicy, load_policy
from serving.records import CanaryInputError, ProbeSet, read_probes
from workflows.cli import main

ROOT = Path(__file__).resolve().parents[1]


def simulate(
    n: int,
    seed: int,
    *,
    median_tokens: float = 600.0,
    slowdown: float = 1.0,
    long_slowdown: float = 1.0,
    tail_share: float = 0.0,
    error_rate: float = 0.002,
    quality: float = 0.8,
    ids: list[str] | None = None,
) -> ProbeSet:
    rng = np.random.default_rng(seed)
    tokens = np.clip(np.round(rng.lognormal(math.log(median_tokens), 0.9, n)), 16, 16000)
    ttft = (0.04 + 1e-4 * tokens) * rng.lognormal(0.0, 0.3, n) * slowdown
    ttft = np.where(tokens >= 1500, ttft * long_slowdown, ttft)
    ttft = np.where(rng.random(n) < tail_share, 5 * ttft, ttft)
    itl = 0.02 * (1 + tokens / 32000) * rng.lognormal(0.0, 0.1, n)
    ok = rng.random(n) >= error_rate
    score = np.where(ok, (rng.random(n) < quality).astype(float), np.nan)
    return ProbeSet.from_columns(
        prompt_tokens=tokens, ttft_s=ttft, itl_s=itl, ok=ok, score=score, prompt_id=ids
    )


def checks(stable: ProbeSet, canary: ProbeSet, **policy: object) -> tuple[str, dict[str, str]]:
    result = judge(stable, canary, CanaryPolicy.model_validate(policy))
    return result.verdict, {c.name: c.verdict for c in result.checks}


def test_identical_arms_pass() -> None:
    verdict, by_name = checks(simulate(2000, 1), simulate(2000, 2))
    assert verdict == "PASS", by_name
    assert set(by_name) >= {"ttft_p50", "ttft_p95", "itl_p50", "itl_p95", "error_rate", "quality"}


def test_uniform_ttft_regression_of_20_percent_fails() -> None:
    verdict, by_name = checks(simulate(800, 3), simulate(800, 4, slowdown=1.2))
    assert verdict == "FAIL"
    assert by_name["ttft_p50"] == "FAIL"
    assert by_name["itl_p50"] != "FAIL"


def test_longer_prompts_alone_do_not_fail() -> None:
    for seed in range(3):
        stable = simulate(1000, 10 + seed)
        canary = simulate(1000, 20 + seed, median_tokens=1500)
        raw = np.median(canary.ttft_s) / np.median(stable.ttft_s)
        assert raw > 1.5  # a fixed threshold would see a large regression
        verdict, by_name = checks(stable, canary)
        assert verdict != "FAIL", by_name


def test_regression_confined_to_long_prompts_fails() -> None:
    verdict, by_name = checks(simulate(1200, 5), simulate(1200, 6, long_slowdown=1.6))
    assert verdict == "FAIL"
    assert by_name["ttft_p50_worst_stratum"] == "FAIL"
    assert by_name["ttft_p50"] != "FAIL"  # diluted overall: only the stratum check sees it


def test_tail_regression_fails_on_p95() -> None:
    verdict, by_name = checks(simulate(1500, 7), simulate(1500, 8, tail_share=0.05))
    assert verdict == "FAIL"
    assert by_name["ttft_p95"] == "FAIL"
    assert by_name["ttft_p50"] != "FAIL"


def test_error_rate_rise_of_5_points_fails() -> None:
    verdict, by_name = checks(simulate(800, 9), simulate(800, 10, error_rate=0.052))
    assert verdict == "FAIL"
    assert by_name["error_rate"] == "FAIL"


def test_quality_drop_fails_unpaired_and_paired() -> None:
    verdict, by_name = checks(simulate(800, 11), simulate(800, 12, quality=0.6))
    assert (verdict, by_name["quality"]) == ("FAIL", "FAIL")
    ids = [f"p{i}" for i in range(400)]
    stable = simulate(400, 13, ids=ids)
    canary = ProbeSet.from_columns(
        prompt_tokens=stable.prompt_tokens,
        ttft_s=stable.ttft_s,
        itl_s=stable.itl_s,
        ok=stable.ok,
        score=np.where(np.arange(400) % 4 == 0, 0.0, stable.score),
        prompt_id=ids,
    )
    result = judge(stable, canary)
    assert result.design == "paired"
    quality = {c.name: c for c in result.checks}["quality"]
    assert quality.verdict == "FAIL"
    assert "Clopper-Pearson" in quality.method


@pytest.mark.parametrize("slowdown", [1.0, 3.0])
def test_too_few_samples_is_inconclusive_never_pass(slowdown: float) -> None:
    result = judge(simulate(29, 14), simulate(29, 15, slowdown=slowdown))
    assert result.verdict == "INCONCLUSIVE"
    assert all(c.verdict in ("INCONCLUSIVE", "SKIPPED") for c in result.checks)
    assert "too few" in {c.name: c for c in result.checks}["ttft_p50"].reason


def test_paired_by_prompt_id() -> None:
    ids = [f"q{i}" for i in range(400)]
    rng = np.random.default_rng(16)
    tokens = np.clip(np.round(rng.lognormal(math.log(600), 0.9, 400)), 16, 16000)
    # Each prompt has its own latency (cache hits, content); per-request noise is small.
    base = (0.04 + 1e-4 * tokens) * rng.lognormal(0.0, 0.5, 400)

    def arm(factor: float) -> ProbeSet:
        return ProbeSet.from_columns(
            prompt_tokens=tokens,
            ttft_s=base * factor * rng.lognormal(0.0, 0.05, 400),
            itl_s=0.02 * rng.lognormal(0.0, 0.05, 400),
            score=np.ones(400),
            prompt_id=ids,
        )

    same = judge(arm(1.0), arm(1.0))
    assert same.design == "paired"
    assert same.verdict == "PASS", same.reason
    slower = judge(arm(1.0), arm(1.2))
    assert slower.verdict == "FAIL"
    ttft = {c.name: c for c in slower.checks}["ttft_p50"]
    assert ttft.interval is not None and ttft.interval[0] > 1.1
    assert ttft.n == 400
    unpaired = judge(arm(1.0), arm(1.2), CanaryPolicy(pairing="strata"))
    assert unpaired.design == "strata"
    wide = {c.name: c for c in unpaired.checks}["ttft_p50"].interval
    assert wide is not None and wide[1] - wide[0] > ttft.interval[1] - ttft.interval[0]


def test_paired_policy_refuses_unmatched_ids() -> None:
    with pytest.raises(CanaryInputError, match="pairing: paired"):
        judge(simulate(100, 17), simulate(100, 18), CanaryPolicy(pairing="paired"))


def test_sequential_stops_early_on_a_clear_regression() -> None:
    stable, canary = simulate(1200, 19), simulate(1200, 20, slowdown=1.5)
    batches = [
        (stable.take(np.arange(i, i + 120)), canary.take(np.arange(i, i + 120)))
        for i in range(0, 1200, 120)
    ]
    result = judge_sequential(batches, max_looks=10)
    assert result.judgement.verdict == "FAIL"
    assert result.looks < 10
    assert result.judgement.confidence == pytest.approx(1 - 0.05 / 10)
    with pytest.raises(CanaryInputError, match="max_looks"):
        judge_sequential(batches, max_looks=0)


def test_newcombe_interval_brackets_the_difference() -> None:
    lower, upper = newcombe_interval(10, 100, 2, 100, 0.05)
    assert lower < 0.08 < upper
    assert lower > 0  # 10% vs 2% errors is shown at 95%
    zero_low, zero_high = newcombe_interval(0, 50, 0, 50, 0.05)
    assert zero_low < 0 < zero_high


def test_policy_file_overrides_and_validation(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("latency_tolerance: 0.2\nmin_samples: 50\n")
    policy = load_policy(good)
    assert (policy.latency_tolerance, policy.min_samples, policy.confidence) == (0.2, 50, 0.95)
    assert load_policy(None) == CanaryPolicy()
    for text, needle in [
        ("latency_tolerance: -0.1\n", "latency_tolerance"),
        ("confidence: 1.5\n", "confidence"),
        ("quantiles: [0.5, 1.2]\n", "quantiles"),
        ("latency_tolerence: 0.1\n", "unknown setting"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("a: [\n", "not valid YAML"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(CanaryInputError, match=needle):
            load_policy(bad)


def record(**overrides: object) -> str:
    base: dict[str, object] = {
        "prompt_id": "p1",
        "prompt_tokens": 100,
        "output_tokens": 20,
        "ttft_s": 0.1,
        "itl_s": 0.02,
        "e2e_s": 0.5,
        "ok": True,
        "score": 1.0,
    }
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v != "<drop>"})


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (record(ttft_s=-1), "field 'ttft_s' is -1"),
        (record(prompt_tokens=0), "field 'prompt_tokens' is 0"),
        (record(ok="yes"), "field 'ok' is 'yes'"),
        (record(score=1.5), "field 'score' is 1.5"),
        (record(ok=False), "field 'score' is 1.0"),
        (record(prompt_id="<drop>"), "missing field"),
        ("[1, 2]", "must be a JSON object"),
        ("{oops", "not valid JSON"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(record() + "\n" + line + "\n")
    with pytest.raises(CanaryInputError, match="probes.jsonl:2") as info:
        read_probes(path)
    assert needle in str(info.value)


def test_failed_request_may_have_null_timings(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(record(ok=False, ttft_s=None, itl_s=None, e2e_s=None, score=None) + "\n")
    probes = read_probes(path)
    assert len(probes) == 1 and not probes.ok[0] and math.isnan(probes.ttft_s[0])


def write_jsonl(path: Path, probes: ProbeSet) -> Path:
    lines = []
    for i in range(len(probes)):
        ok = bool(probes.ok[i])
        lines.append(
            json.dumps(
                {
                    "prompt_id": probes.prompt_id[i],
                    "prompt_tokens": int(probes.prompt_tokens[i]),
                    "output_tokens": 64,
                    "ttft_s": float(probes.ttft_s[i]) if ok else None,
                    "itl_s": float(probes.itl_s[i]) if ok else None,
                    "e2e_s": float(probes.ttft_s[i] + 63 * probes.itl_s[i]) if ok else None,
                    "ok": ok,
                    "score": None if math.isnan(probes.score[i]) else float(probes.score[i]),
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    stable = write_jsonl(tmp_path / "stable.jsonl", simulate(2000, 1))
    cases = {
        0: write_jsonl(tmp_path / "same.jsonl", simulate(2000, 2)),
        1: write_jsonl(tmp_path / "slow.jsonl", simulate(2000, 2, slowdown=1.3)),
        3: write_jsonl(tmp_path / "few.jsonl", simulate(20, 2)),
    }
    runner = CliRunner()
    for code, canary in cases.items():
        args = ["canary", "judge", "--stable", str(stable), "--canary", str(canary)]
        result = runner.invoke(main, args)
        assert result.exit_code == code, result.output
        out = json.loads(result.stdout)
        assert out["verdict"] == {0: "PASS", 1: "FAIL", 3: "INCONCLUSIVE"}[code]
        for check in out["checks"].values():
            assert set(check) >= {"verdict", "estimate", "interval", "n", "reason", "limit"}
        assert out["checks"]["ttft_p50"]["n"] > 0
    policy = tmp_path / "policy.yaml"
    policy.write_text("latency_tolerance: 0.5\n")
    args = ["canary", "judge", "--stable", str(stable), "--canary", str(cases[1])]
    relaxed = runner.invoke(main, [*args, "--policy", str(policy)])
    assert relaxed.exit_code == 0, relaxed.output
    assert json.loads(relaxed.stdout)["policy"]["latency_tolerance"] == 0.5


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    stable = write_jsonl(tmp_path / "stable.jsonl", simulate(50, 1))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(record(itl_s="fast") + "\n")
    runner = CliRunner()
    result = runner.invoke(
        main, ["canary", "judge", "--stable", str(stable), "--canary", str(broken)]
    )
    assert result.exit_code == 2
    assert "broken.jsonl:1" in result.stderr and "itl_s" in result.stderr
    assert result.stdout == ""
    missing = runner.invoke(
        main, ["canary", "judge", "--stable", str(stable), "--canary", str(tmp_path / "no")]
    )
    assert missing.exit_code == 2
    bad_policy = tmp_path / "p.yaml"
    bad_policy.write_text("min_samples: 1\n")
    result = runner.invoke(
        main,
        ["canary", "judge", "--stable", str(stable), "--canary", str(stable)]
        + ["--policy", str(bad_policy)],
    )
    assert result.exit_code == 2 and "min_samples" in result.stderr


def test_benchmark_quick_prints_its_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        "canary_judge_bench", ROOT / "benchmarks" / "canary_judge.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| method |")
    assert len(rows) == 2 + len(bench.METHODS)
    for name in bench.METHODS:
        assert any(row.startswith(f"| {name} |") for row in rows)
    assert all(row.count("|") == 7 for row in rows)
    for baseline in ("flagger", "argo", "kayenta"):
        assert f"ratio of samples judge / {baseline}" in out
    assert "goal false rollbacks <= 1%" in out

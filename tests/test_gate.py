"""The evaluation gate: exact and bootstrap bounds, pairing lm-eval samples, and the CLI."""

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from click.testing import CliRunner

from evals.gate import (
    beta_quantile,
    bootstrap_lower,
    clopper_pearson_lower,
    clopper_pearson_upper,
    decide,
    gate_files,
    paired_binary_lower,
    regularized_beta,
)
from evals.samples import EvalInputError, pair_scores, read_samples
from workflows.cli import main


def write_samples(path: Path, scores, metric: str = "acc", ids=None, **extra) -> Path:
    ids = range(len(scores)) if ids is None else ids
    # The bookkeeping keys lm-eval writes besides the metrics, which the reader must ignore.
    common = {"doc": {"q": "?"}, "resps": [["x"]], "filter": "none", "doc_hash": "h", **extra}
    lines = [
        json.dumps({"doc_id": i, **common, "metrics": [metric], metric: s})
        for i, s in zip(ids, scores, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def paired_binary(n: int, both: int, gains: int, losses: int):
    """Candidate and reference 0/1 scores: `both` right for both, then gains, losses, rest wrong."""
    cand = [1] * both + [1] * gains + [0] * losses
    ref = [1] * both + [0] * gains + [1] * losses
    rest = n - len(cand)
    return cand + [0] * rest, ref + [0] * rest


def binomial_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


# --- the exact distributions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "p"), [(1, 1, 0.3), (3, 10, 0.2), (7, 10, 0.9), (40, 120, 0.31), (300, 1000, 0.3)]
)
def test_regularized_beta_is_the_binomial_tail(k: int, n: int, p: float) -> None:
    assert regularized_beta(k, n - k + 1, p) == pytest.approx(binomial_tail(k, n, p), abs=1e-12)


def test_beta_quantile_inverts_the_cdf_and_matches_closed_forms() -> None:
    assert beta_quantile(0.5, 2.0, 2.0) == pytest.approx(0.5, abs=1e-12)
    assert beta_quantile(0.3, 1.0, 1.0) == pytest.approx(0.3, abs=1e-12)
    # Beta(a, 1) has CDF x**a.
    assert beta_quantile(0.05, 4.0, 1.0) == pytest.approx(0.05 ** (1 / 4), abs=1e-12)
    x = beta_quantile(0.025, 12.5, 30.0)
    assert regularized_beta(12.5, 30.0, x) == pytest.approx(0.025, abs=1e-12)


def test_clopper_pearson_known_values() -> None:
    # The textbook 95% two-sided interval for 5 of 10: (0.1871, 0.8129).
    assert clopper_pearson_lower(5, 10, 0.025) == pytest.approx(0.18709, abs=1e-5)
    assert clopper_pearson_upper(5, 10, 0.025) == pytest.approx(0.81291, abs=1e-5)
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100), abs=1e-12)
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10), abs=1e-12)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0


def test_paired_binary_bound_errs_at_most_alpha() -> None:
    rng = np.random.default_rng(7)
    for n, p_gain, p_loss in [(60, 0.05, 0.10), (300, 0.04, 0.04), (200, 0.15, 0.05)]:
        counts = rng.multinomial(n, [p_gain, p_loss, 1 - p_gain - p_loss], size=400)
        bounds = [paired_binary_lower(int(g), int(lo), n, 0.05) for g, lo, _ in counts]
        misses = sum(bound > p_gain - p_loss for bound in bounds)
        assert misses / len(counts) <= 0.05 + 0.02


def test_paired_binary_bound_with_no_discordant_pairs_is_the_rule_of_three_kind() -> None:
    # No discordant item in n: the loss can still be up to the upper bound on their share.
    assert paired_binary_lower(0, 0, 100, 0.05) == pytest.approx(-(1 - 0.025 ** (1 / 100)))


def test_bootstrap_is_seeded_and_close_to_the_normal_bound_for_a_large_sample() -> None:
    values = np.random.default_rng(3).normal(0.01, 0.1, 2000)
    first = bootstrap_lower(values, 0.05, seed=1)
    assert first == bootstrap_lower(values, 0.05, seed=1)
    normal = values.mean() - 1.6449 * values.std(ddof=1) / math.sqrt(values.size)
    assert first == pytest.approx(normal, abs=0.001)
    assert first < values.mean()


# --- the decision ------------------------------------------------------------------------------


def test_identical_results_pass_with_a_margin() -> None:
    scores = [1] * 350 + [0] * 150
    decision = decide(scores, scores, "acc", margin=0.02)
    assert decision.passed
    assert decision.estimate == 0.0 and decision.n == 500
    assert decision.lower is not None and -0.02 < decision.lower < 0
    assert decision.upper is None
    assert decision.reason.startswith("passed:") and "above -margin" in decision.reason


def test_a_clear_regression_fails() -> None:
    cand, ref = paired_binary(400, both=200, gains=20, losses=80)
    decision = decide(cand, ref, "acc", margin=0.02)
    assert not decision.passed
    assert decision.estimate == pytest.approx(-0.15)
    assert decision.n_better == 20 and decision.n_worse == 80
    assert decision.reason.startswith("failed:") and "not above -margin = -0.02" in decision.reason


def test_a_tiny_sample_cannot_pass() -> None:
    assert not decide([1, 1, 0, 1, 1], [1, 1, 0, 1, 1], "acc", margin=0.05).passed
    assert not decide([1] * 5, [1] * 5, "acc", floor=0.6).passed
    scores = [0.3, 0.5, 0.7] * 3
    decision = decide(scores, scores, "f1", margin=0.05, floor=0.1)
    assert not decision.passed and decision.lower is None
    assert "needs at least 30" in decision.reason


def test_no_items_is_refused() -> None:
    with pytest.raises(EvalInputError, match="n = 0"):
        decide([], [], "acc", margin=0.05)


def test_only_pairing_shows_non_inferiority_on_correlated_items() -> None:
    # Both models 60% right on 400 items; they disagree on only 20, 10 each way.
    n = 400
    cand, ref = paired_binary(n, both=230, gains=10, losses=10)
    p_cand, p_ref = np.mean(cand), np.mean(ref)
    assert p_cand == p_ref == 0.6
    # An unpaired comparison treats them as independent samples and cannot pass at 0.05.
    z = NormalDist().inv_cdf(0.95)
    se = math.sqrt(p_cand * (1 - p_cand) / n + p_ref * (1 - p_ref) / n)
    unpaired_lower = (p_cand - p_ref) - z * se
    assert unpaired_lower < -0.05
    decision = decide(cand, ref, "acc", margin=0.05)
    assert decision.passed
    assert decision.lower is not None and unpaired_lower < -0.05 < decision.lower
    assert decision.method.startswith("exact")


def test_continuous_metric_uses_a_bootstrap() -> None:
    rng = np.random.default_rng(11)
    ref = rng.uniform(0.2, 0.9, 300)
    same = np.clip(ref + rng.normal(0, 0.05, 300), 0, 1)
    decision = decide(same, ref, "f1", margin=0.02, seed=5)
    assert decision.passed and "BCa bootstrap" in decision.method
    assert decision.lower is not None and decision.lower < decision.estimate
    assert decide(same, ref, "f1", margin=0.02, seed=5) == decision
    worse = decide(ref - 0.05 + rng.normal(0, 0.05, 300), ref, "f1", margin=0.02)
    assert not worse.passed and worse.estimate == pytest.approx(-0.05, abs=0.01)


def test_lower_is_better_flips_the_difference() -> None:
    rng = np.random.default_rng(2)
    ref = rng.uniform(2.0, 4.0, 200)
    better = decide(ref - 0.3, ref, "perplexity", margin=0.1, higher_is_better=False)
    assert better.passed and better.estimate == pytest.approx(0.3)
    worse = decide(ref + 0.3, ref, "perplexity", margin=0.1, higher_is_better=False)
    assert not worse.passed and worse.estimate == pytest.approx(-0.3)
    assert worse.candidate_mean > worse.reference_mean
    # A binary lower-is-better score (an error flag): fewer errors is better.
    errors_cand, errors_ref = paired_binary(400, both=20, gains=0, losses=60)
    decision = decide(errors_cand, errors_ref, "error", margin=0.0, higher_is_better=False)
    assert decision.passed and decision.estimate == pytest.approx(0.15)
    ceiling = decide(errors_cand, errors_ref, "error", floor=0.1, higher_is_better=False)
    assert ceiling.passed and ceiling.candidate_bound is not None
    assert 0.05 < ceiling.candidate_bound <= 0.1 and "ceiling" in ceiling.reason


def test_floor_only_checks_the_candidate_alone() -> None:
    cand = [1] * 320 + [0] * 80  # 80%
    ref = [1] * 400  # the reference being better does not matter without a margin
    decision = decide(cand, ref, "acc", floor=0.75)
    assert decision.passed and decision.margin is None
    assert decision.candidate_bound is not None and 0.75 <= decision.candidate_bound < 0.8
    assert "at or above the floor 0.75" in decision.reason
    assert not decide(cand, ref, "acc", floor=0.79).passed
    assert not decide(cand, ref, "acc", floor=0.75, margin=0.05).passed


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "no criterion"),
        ({"margin": -0.01}, "margin -0.01 must be"),
        ({"margin": float("nan")}, "margin nan must be"),
        ({"margin": 0.01, "confidence": 0.5}, "confidence 0.5 must lie"),
        ({"margin": 0.01, "confidence": 1.0}, "confidence 1.0 must lie"),
        ({"floor": float("inf")}, "floor inf must be"),
        ({"margin": 0.01, "resamples": 100}, "at least 10000"),
    ],
)
def test_bad_settings_are_refused(settings, message: str) -> None:
    with pytest.raises(EvalInputError, match=message):
        decide([1, 0], [1, 0], "acc", **settings)


def test_decision_json_has_the_evidence() -> None:
    decision = decide([1] * 100, [1] * 100, "acc", margin=0.05)
    record = json.loads(decision.to_json())
    assert record["passed"] is True and record["n"] == 100
    assert record["interval"] == [decision.lower, None]
    for key in ["estimate", "margin", "floor", "reason", "method", "confidence", "metric"]:
        assert key in record


# --- reading lm-eval samples -------------------------------------------------------------------


def test_read_samples_takes_the_metric_and_ignores_the_rest(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "s.jsonl", [True, 0, 1.0], metric="exact_match")
    assert read_samples(path, "exact_match") == {0: 1.0, 1: 0.0, 2: 1.0}


def test_read_samples_prefers_the_none_filter_else_the_first(tmp_path: Path) -> None:
    rows = [
        {"doc_id": 0, "filter": "strict-match", "exact_match": 0.0},
        {"doc_id": 0, "filter": "none", "exact_match": 1.0},
        {"doc_id": 1, "filter": "strict-match", "exact_match": 1.0},
        {"doc_id": 1, "filter": "flexible-extract", "exact_match": 0.0},
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert read_samples(path, "exact_match") == {0: 1.0, 1: 1.0}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"doc_id": 1, "acc_norm": 1.0, "metrics": ["acc_norm"]}', r"s.jsonl:2: no metric 'acc'"),
        ('{"doc_id": 1, "acc": "yes"}', r"s.jsonl:2: metric 'acc' is 'yes'"),
        ('{"doc_id": 1, "acc": [["ref"], ["pred"]]}', "corpus-level"),
        ('{"doc_id": 1, "acc": NaN}', "finite"),
        ('{"acc": 1.0}', r"s.jsonl:2: no 'doc_id'"),
        ('{"doc_id": 0, "acc": 1.0}', "already appears on line 1"),
        ("not json", r"s.jsonl:2: not JSON"),
    ],
)
def test_read_samples_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"doc_id": 0, "acc": 1.0}\n' + line + "\n")
    with pytest.raises(EvalInputError, match=message):
        read_samples(path, "acc")


def test_empty_or_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(EvalInputError, match="has no samples"):
        read_samples(tmp_path / "empty.jsonl", "acc")
    with pytest.raises(EvalInputError, match="cannot read"):
        read_samples(tmp_path / "absent.jsonl", "acc")


def test_different_items_are_an_error_listing_some_ids() -> None:
    cand = {i: 1.0 for i in range(20)}
    ref = {i: 1.0 for i in range(3, 30)}
    with pytest.raises(EvalInputError, match="different items") as caught:
        pair_scores(cand, ref)
    text = str(caught.value)
    assert "3 doc_ids (0, 1, 2) only in candidate" in text
    assert "10 doc_ids (20, 21, 22, 23, 24 and 5 more) only in reference" in text


def test_gate_files_pairs_by_doc_id_not_by_line(tmp_path: Path) -> None:
    cand, ref = paired_binary(300, both=150, gains=5, losses=5)
    write_samples(tmp_path / "c.jsonl", cand[::-1], ids=range(299, -1, -1))
    write_samples(tmp_path / "r.jsonl", ref)
    decision = gate_files(tmp_path / "c.jsonl", tmp_path / "r.jsonl", "acc", margin=0.05)
    assert decision.passed and decision.n_better == 5 and decision.n_worse == 5


# --- the command line --------------------------------------------------------------------------


def gate(tmp_path: Path, cand, ref, *options: str, ref_ids=None):
    write_samples(tmp_path / "cand.jsonl", cand)
    write_samples(tmp_path / "ref.jsonl", ref, ids=ref_ids)
    args = ["eval", "gate", "--candidate", str(tmp_path / "cand.jsonl")]
    args += ["--reference", str(tmp_path / "ref.jsonl"), "--metric", "acc", *options]
    return CliRunner().invoke(main, args)


def test_cli_exits_0_and_prints_one_json_object_when_it_passes(tmp_path: Path) -> None:
    cand, ref = paired_binary(400, both=230, gains=10, losses=10)
    result = gate(tmp_path, cand, ref, "--margin", "0.05")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["passed"] is True and record["n"] == 400 and record["margin"] == 0.05
    assert record["estimate"] == 0.0 and record["interval"][0] > -0.05
    assert record["interval"][1] is None and record["reason"].startswith("passed:")


def test_cli_exits_1_when_it_fails(tmp_path: Path) -> None:
    cand, ref = paired_binary(400, both=200, gains=20, losses=80)
    result = gate(tmp_path, cand, ref, "--margin", "0.02", "--floor", "0.5")
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["passed"] is False and record["floor"] == 0.5
    assert "not above -margin" in record["reason"]


def test_cli_lower_is_better_and_confidence(tmp_path: Path) -> None:
    errors_cand, errors_ref = paired_binary(400, both=20, gains=0, losses=60)
    options = ["--margin", "0", "--lower-is-better", "--confidence", "0.99"]
    result = gate(tmp_path, errors_cand, errors_ref, *options)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["higher_is_better"] is False and record["confidence"] == 0.99


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "no criterion"),
        (["--margin", "-0.1"], "margin -0.1 must be"),
        (["--margin", "0.1", "--confidence", "1.5"], "confidence 1.5 must lie"),
        (["--floor", "0.5", "--metric", "exact_match"], "no metric 'exact_match'"),
    ],
)
def test_cli_exits_2_on_bad_input(tmp_path: Path, options: list[str], message: str) -> None:
    result = gate(tmp_path, [1, 0, 1], [1, 0, 1], *options)
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""


def test_cli_exits_2_when_the_items_differ(tmp_path: Path) -> None:
    result = gate(tmp_path, [1, 0, 1], [1, 0, 1], "--margin", "0.1", ref_ids=[0, 1, 7])
    assert result.exit_code == 2
    assert "different items" in result.stderr and "(2) only in" in result.stderr
    assert "(7) only in" in result.stderr and result.stdout == ""


def test_cli_exits_2_on_a_missing_file(tmp_path: Path) -> None:
    args = ["eval", "gate", "--candidate", str(tmp_path / "nope.jsonl")]
    result = CliRunner().invoke(main, [*args, "--reference", "x", "--metric", "acc"])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_eval_gate_has_help() -> None:
    result = CliRunner().invoke(main, ["eval", "gate", "--help"])
    assert result.exit_code == 0 and "--lower-is-better" in result.output
    assert "eval" in CliRunner().invoke(main, ["--help"]).output

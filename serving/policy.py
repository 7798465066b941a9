"""The canary policy: what a canary may lose against the stable deployment, and how surely.

Defaults (every field can be overridden in a YAML file given to `--policy`):

    latency_tolerance: 0.10      # median and p95 of TTFT and ITL may grow by at most 10%
    error_rate_tolerance: 0.01   # the error rate may rise by at most 1 percentage point
    quality_margin: 0.05         # mean answer quality may drop by at most 0.05
    confidence: 0.95             # of each one-sided bound
    min_samples: 30              # per arm; fewer is never a PASS
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serving.records import CanaryInputError

Metric = Literal["ttft_s", "itl_s", "e2e_s"]


class CanaryPolicy(BaseModel):
    """Tolerances and settings of the canary judge.

    Attributes:
        latency_tolerance: Largest relative growth of each latency quantile (0.10: +10%).
            Relative, because latency scales with load and hardware: a fixed number of
            milliseconds is too loose for short prompts and too tight for long ones.
        quantiles: The latency quantiles compared: the median for the typical request, p95
            for the tail users notice (a few percent of requests much slower).
        metrics: Latency fields compared.
        stratum_quantile: Quantile compared within each prompt-length stratum, to catch a
            regression confined to some prompt lengths (long-prompt prefill). The median,
            because strata hold a fraction of the data and a stratum's p95 is too noisy.
        strata: Prompt-length strata (quantile bins of both arms' prompt lengths), at most;
            fewer are used when a stratum would hold too few requests of an arm for the
            quantile (10 for the median, 100 for p95).
        error_rate_tolerance: Largest rise of the error rate, as a difference of proportions.
        quality_margin: Non-inferiority margin of mean answer quality (score in [0, 1]).
        confidence: Confidence of each one-sided bound, in (0.5, 1); the interval reported is
            the pair of one-sided bounds, a two-sided (2 * confidence - 1) interval.
        min_samples: Requests per arm (pairs, when paired) a check needs to decide at all.
        pairing: `auto` pairs requests by prompt_id when the ids are unique per arm and
            matched ids cover at least 90% of each arm; `paired` insists; `strata` never pairs.
        resamples: Bootstrap resamples of each latency interval.
        seed: Bootstrap seed; the same seed and data give the same verdict.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_tolerance: float = Field(default=0.10, ge=0, le=10)
    quantiles: tuple[float, ...] = Field(default=(0.5, 0.95), min_length=1)
    metrics: tuple[Metric, ...] = Field(default=("ttft_s", "itl_s"), min_length=1)
    stratum_quantile: float = Field(default=0.5, gt=0, lt=1)
    strata: int = Field(default=4, ge=1, le=20)
    error_rate_tolerance: float = Field(default=0.01, ge=0, le=1)
    quality_margin: float = Field(default=0.05, ge=0, le=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_samples: int = Field(default=30, ge=2)
    pairing: Literal["auto", "paired", "strata"] = "auto"
    resamples: int = Field(default=2000, ge=200, le=100_000)
    seed: int = 0

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        """Each quantile strictly inside (0, 1), no repeats."""
        for q in value:
            if not 0 < q < 1:
                raise ValueError(f"quantile {q} must lie strictly between 0 and 1, e.g. 0.95")
        if len(set(value)) != len(value):
            raise ValueError(f"quantiles {list(value)} repeat a value: list each once")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each metric once."""
        if len(set(value)) != len(value):
            raise ValueError(f"metrics {list(value)} repeat a value: list each once")
        return value


def load_policy(path: Path | None) -> CanaryPolicy:
    """The policy in a YAML file (a mapping of overrides), or the default one for None.

    Raises:
        CanaryInputError: The file cannot be read, is not a YAML mapping, names an unknown
            field or gives a value out of range; the message names the field and value.
    """
    if path is None:
        return CanaryPolicy()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CanaryInputError(f"cannot read canary policy {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise CanaryInputError(f"canary policy {path} is not valid YAML: {exc}") from None
    if data is None:
        return CanaryPolicy()
    if not isinstance(data, dict):
        raise CanaryInputError(
            f"canary policy {path} must be a mapping of settings (e.g. `latency_tolerance: "
            f"0.1`), not a {type(data).__name__}"
        )
    try:
        return CanaryPolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc']) or '(top)'!r} = {err.get('input')!r}: "
            f"{_describe(err['type'], err['msg'])}"
            for err in exc.errors()
        )
        raise CanaryInputError(f"canary policy {path}: {problems}") from None


def _describe(kind: str, message: str) -> str:
    """Pydantic's message, with the fix spelled out for an unknown field."""
    if kind == "extra_forbidden":
        known = ", ".join(CanaryPolicy.model_fields)
        return f"unknown setting: remove it or use one of {known}"
    return message

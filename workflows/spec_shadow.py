"""The `serving.shadow` section: mirrored live traffic to the candidate before any user sees it.

A shadow stage deploys the candidate beside stable and has the gateway mirror a fraction of
live requests to it (Gateway API `RequestMirror`): every client is answered by stable, and the
candidate's answers are measured and discarded. It ends after a time (`duration`) or once the
candidate has served a number of mirrored requests (`requests`, waiting at most `timeout`).
"""

import math

from pydantic import Field, field_validator, model_validator

from workflows.spec_base import Section, duration_s


class ShadowSpec(Section):
    """How long, and on how much of the live traffic, the candidate is shadowed."""

    fraction: float = Field(
        description="share of live requests mirrored to the candidate, in (0, 1]; 1 gives it "
        "stable's whole load"
    )
    duration: str | None = Field(
        default=None, description="mirror for this long (a Prometheus duration, e.g. 10m)"
    )
    requests: int | None = Field(
        default=None, ge=1, description="mirror until the candidate has served this many requests"
    )
    timeout: str = Field(
        default="30m",
        description="with `requests`: the longest wait for them; then what came is judged",
    )

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 < value <= 1):
            raise ValueError(
                f"fraction {value} must lie in (0, 1], e.g. 0.1 to mirror a tenth of live traffic"
            )
        return value

    @field_validator("duration", "timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and duration_s(value) <= 0:
            raise ValueError(f"{value!r} must be a positive duration, e.g. 90s, 10m or 1h30m")
        return value

    @model_validator(mode="after")
    def _one_end(self) -> "ShadowSpec":
        if (self.duration is None) == (self.requests is None):
            raise ValueError(
                "give exactly one of duration (e.g. 10m) or requests (e.g. 500): what ends the "
                "shadow stage"
            )
        return self

"""The `schedules:` section of a release spec: pipelines Argo starts on a cron schedule.

Each entry becomes a CronWorkflow that runs a pipeline's WorkflowTemplate with some parameters
overridden, e.g. the nightly evaluation of what serves in production:

    schedules:
      - name: nightly-eval
        pipeline: evaluate
        cron: "0 2 * * *"
        timezone: Europe/Berlin
        parameters: {candidate: s3://models/tiny-llama-ft/final, fail-on-gate: "true"}

The timezone is required: a schedule without one runs in the controller's zone, which moves
with the cluster. Two runs of one schedule never overlap (`concurrencyPolicy: Forbid`); a
run that could not start within `starting_deadline_seconds` of its time (the controller was
down) is skipped rather than started late.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, field_validator

from workflows.spec_base import Section, dns_label

#: One cron field: *, a number, a range, a list, a step; or a name of a month or weekday.
_FIELD = (
    r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*"
)
_CRON = re.compile(rf"^{_FIELD}( {_FIELD}){{4}}$")
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleSpec(Section):
    """One scheduled pipeline."""

    name: str = Field(description="the CronWorkflow's name")
    pipeline: str = Field(description="the pipeline (WorkflowTemplate) it starts")
    cron: str = Field(description="five-field cron expression, e.g. '0 2 * * *', or @daily")
    timezone: str = Field(description="IANA time zone the schedule is read in, e.g. UTC")
    parameters: dict[str, str] = Field(
        default_factory=dict, description="workflow parameters to override"
    )
    starting_deadline_seconds: int = Field(
        default=600, ge=0, description="skip a run that could not start this long after its time"
    )
    suspend: bool = Field(default=False, description="declared but not running")
    history: int = Field(default=5, ge=1, description="finished runs kept, of each outcome")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value, "the schedule's name")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value in _MACROS or _CRON.match(value):
            return value
        raise ValueError(
            "must be five cron fields (minute hour day-of-month month day-of-week), e.g. "
            "'0 2 * * *' for 02:00 every day, or one of " + ", ".join(sorted(_MACROS))
        )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = sorted(z for z in available_timezones() if value.lower() in z.lower())[:3]
            hint = f"; did you mean {', '.join(close)}?" if close else " (e.g. UTC, Europe/Berlin)"
            raise ValueError(f"{value!r} is not an IANA time zone{hint}") from None
        return value

    @field_validator("parameters", mode="before")
    @classmethod
    def _strings(cls, value: object) -> object:
        # YAML reads `fail-on-gate: true` as a bool; a workflow parameter is a string.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
            }
        return value

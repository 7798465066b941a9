"""What one release did, kept for good: the immutable record every release run writes.

A record is written once, when the run ends, whatever the outcome: a release that failed
early has only its model, id, outcome, reason and times; one that reached production also
has its weights, images, evaluation, and its promotion path (`steps.releases.path`): each
stage it went through with the evidence of its verdict. The id starts with the run's start
time in UTC, so ids sort by age as plain strings (`20250301T120000Z-deploy-x7k2p`), and ends
with the workflow's name, unique in its namespace, so two runs never share one.
"""

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from steps.releases.path import StageRecord

#: Bumped when a field changes meaning or a required one is added; readers check it.
SCHEMA_VERSION = 1

#: How a release ended.
Outcome = Literal["production", "rolled-back", "gate-failed", "failed"]

OUTCOMES: tuple[str, ...] = ("production", "rolled-back", "gate-failed", "failed")

_RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_WORKFLOW_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


class _Part(BaseModel):
    """A part of a record: strict, so a misspelt field is an error where the record is made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkflowRef(_Part):
    """The Argo workflow (or local run) that made the release."""

    name: str = Field(description="the workflow's name")
    namespace: str | None = Field(default=None, description="its namespace")


class GitRef(_Part):
    """The code the release was built from; any part may be unknown."""

    repo: str | None = None
    commit: str | None = None
    tag: str | None = None


class WeightsRef(_Part):
    """The weights the release serves."""

    uri: str = Field(description="where the weights are (s3://, file://)")
    digest: str | None = Field(default=None, description="content digest sha256:<hex>")


class TrainingSummary(BaseModel):
    """What training produced; extra keys of the run's summary are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)

    steps: int | None = None
    final_loss: float | None = None
    tokens_per_second: float | None = None
    checkpoint: str | None = Field(default=None, description="URI of the final model")


class EvaluationSummary(BaseModel):
    """The evaluation gate's answer and where its evidence is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    passed: bool | None = None
    decision: str | list[str] | None = Field(default=None, description="one line per gate")
    report: str | None = Field(default=None, description="URI of the gate report")
    results: dict[str, Any] | str | None = Field(
        default=None, description="per-metric results, or the URI of the results"
    )


class CanaryStage(_Part):
    """One judged canary stage."""

    stage: int | None = Field(default=None, description="percent of traffic on the canary")
    verdict: str = Field(description="PASS, FAIL or INCONCLUSIVE")
    reason: str | None = None


class CanarySummary(BaseModel):
    """The canary's stages in order, and where the report is; other keys kept as they are.

    The deploy pipeline reports more than its stages (its mode, the new version's label),
    and a record keeps what it was given rather than fail at the end of a release.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    stages: list[CanaryStage] = Field(default_factory=list)
    report: str | None = Field(default=None, description="URI of the canary report")


class ReleaseRecord(_Part):
    """One release of one model, as it ended; never changed once stored."""

    schema_version: int = SCHEMA_VERSION
    model: str = Field(description="the model's name (spec `model.name`)")
    release: str = Field(description="<UTC yyyymmddThhmmssZ of the start>-<workflow name>")
    outcome: Outcome
    reason: str = Field(default="", description="why it ended so, in a sentence")
    started_at: AwareDatetime
    finished_at: AwareDatetime
    workflow: WorkflowRef | None = None
    spec: dict[str, Any] | None = Field(default=None, description="the release spec it ran")
    git: GitRef | None = None
    weights: WeightsRef | None = None
    images: dict[str, str] | None = Field(default=None, description="image name -> digest")
    training: TrainingSummary | None = None
    evaluation: EvaluationSummary | None = None
    canary: CanarySummary | None = None
    stages: list[StageRecord] | None = Field(
        default=None,
        description="the promotion path (staging, shadow, canary, production) as far as it "
        "went, each stage with its verdict and evidence",
    )

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is newer than this llmflow reads ({SCHEMA_VERSION}); "
                "upgrade llmflow"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return check_model_name(value)

    @field_validator("release")
    @classmethod
    def _release_id(cls, value: str) -> str:
        return check_release_id(value)

    def to_json(self) -> str:
        """The stored form: indented JSON, absent parts left out."""
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"


def check_model_name(value: str) -> str:
    """`value` if it can name a model's folder in the store; else a ValueError saying why."""
    if not _MODEL_NAME.match(value):
        raise ValueError(
            f"model {value!r}: use letters, digits, '.', '_' and '-' (it names a folder)"
        )
    return value


def check_release_id(value: str) -> str:
    """`value` if it is a release id; else a ValueError saying what one looks like."""
    if not _RELEASE_ID.match(value):
        raise ValueError(
            f"release {value!r}: an id is <yyyymmddThhmmssZ>-<workflow name>, "
            "such as 20250301T120000Z-deploy-x7k2p"
        )
    return value


def release_id(workflow: str, started_at: datetime) -> str:
    """The id of the release a workflow run started at `started_at` makes.

    Raises:
        ValueError: `workflow` is not a workflow name, or `started_at` has no time zone.
    """
    if not _WORKFLOW_NAME.match(workflow):
        raise ValueError(
            f"workflow name {workflow!r}: use lowercase letters, digits, '.' and '-', "
            "as Kubernetes names do"
        )
    if started_at.tzinfo is None:
        raise ValueError(f"started_at {started_at.isoformat()}: give a time with a time zone")
    return f"{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{workflow}"


def utc_now() -> datetime:
    """Now, in UTC, to the second (as ids and Argo's timestamps are)."""
    return datetime.now(UTC).replace(microsecond=0)

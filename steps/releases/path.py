"""The promotion path a release took: staging -> shadow -> canary -> production.

A candidate is promoted stage by stage, and each stage has its own evidence: **staging** is the
evaluation gate (paired non-inferiority against production), **shadow** the candidate judged
under mirrored live traffic, **canary** its traffic stages, **production** the promotion. A
record keeps the path as far as the release went, each stage with its verdict, its reason and
its evidence, so `llmflow releases show` answers "how far did it get, and why did it stop".
Stages a release's spec has no section for (no shadow) are absent, not failed.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The stages, in promotion order.
StageName = Literal["staging", "shadow", "canary", "production"]

STAGES: tuple[str, ...] = ("staging", "shadow", "canary", "production")


class StageRecord(BaseModel):
    """One stage of the promotion path and the evidence for its verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StageName
    verdict: str = Field(description="PASS, FAIL or INCONCLUSIVE")
    reason: str | None = None
    evidence: dict[str, Any] | None = Field(
        default=None, description="what decided it: checks with intervals, counts, the window"
    )


def promotion_path(
    outcome: str,
    reason: str,
    evaluation: dict[str, Any] | None,
    shadow: dict[str, Any] | None,
    canary: dict[str, Any] | None,
    production: dict[str, Any] | None,
) -> list[StageRecord]:
    """The stages a release went through, from what its steps reported.

    Args:
        outcome: The release's outcome (production, rolled-back, gate-failed, failed).
        reason: Why it ended so.
        evaluation: The gate's summary (`passed`, `decision`); None when it did not run.
        shadow: `analyse-shadow`'s evidence; None when there was no shadow.
        canary: The last judged canary stage's evidence (each stage overwrites it, and one
            runs only when the one before passed); None when no stage was judged.
        production: What was promoted (version, digest) when the outcome is production.

    Returns:
        The stages in order, up to the one where the release stopped.
    """
    path: list[StageRecord] = []
    if evaluation is not None and evaluation.get("passed") is not None:
        value = evaluation["passed"]  # a bool, or Argo's "true"/"false"
        passed = value if isinstance(value, bool) else str(value).strip().lower() == "true"
        decision = evaluation.get("decision")
        path.append(
            StageRecord(
                name="staging",
                verdict="PASS" if passed else "FAIL",
                reason="the evaluation gate passed" if passed else "the evaluation gate failed",
                evidence={"decision": decision} if decision else None,
            )
        )
    if shadow:
        path.append(
            StageRecord(
                name="shadow",
                verdict=str(shadow.get("verdict", "FAIL")),
                reason=shadow.get("reason"),
                evidence=shadow,
            )
        )
    if canary:
        verdict = str(canary.get("verdict", "FAIL"))
        why = canary.get("reason")
        if outcome != "production" and verdict == "PASS" and canary.get("stage") != 100:
            # A stage passed and the next never judged: the rollout itself failed.
            verdict, why = "FAIL", f"stopped after {canary.get('stage')}%: {reason}"
        path.append(StageRecord(name="canary", verdict=verdict, reason=why, evidence=canary))
    if outcome == "production":
        path.append(
            StageRecord(
                name="production", verdict="PASS", reason="promoted", evidence=production or None
            )
        )
    elif path and path[-1].name == "canary" and path[-1].verdict == "PASS":
        path.append(StageRecord(name="production", verdict="FAIL", reason=reason or None))
    return path


def reached(path: list[StageRecord]) -> str | None:
    """The last stage passed: where the candidate got to."""
    passed = [s.name for s in path if s.verdict == "PASS"]
    return passed[-1] if passed else None


def describe_path(path: list[StageRecord]) -> str:
    """One line: `staging PASS -> shadow PASS -> canary FAIL`."""
    return " -> ".join(f"{s.name} {s.verdict}" for s in path)

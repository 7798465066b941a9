"""The `llmflow eval` commands: gate a candidate model against the production model."""

from __future__ import annotations

from pathlib import Path

import click

samples_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("eval")
def eval_group() -> None:
    """Compare models on lm-eval results."""


@eval_group.command("gate")
@click.option(
    "--candidate",
    required=True,
    type=samples_file,
    help="The candidate's per-sample results: lm-eval's --log_samples JSONL for one task.",
)
@click.option(
    "--reference",
    required=True,
    type=samples_file,
    help="The reference (production) model's per-sample results, same task and items.",
)
@click.option("--metric", required=True, help="Per-item metric key to compare, e.g. acc.")
@click.option(
    "--margin",
    type=float,
    help="Largest loss against the reference to accept, in the metric's units (>= 0): passes "
    "when the lower confidence bound of the paired difference is above -MARGIN.",
)
@click.option(
    "--floor",
    type=float,
    help="Worst acceptable candidate mean (a ceiling with --lower-is-better): passes when the "
    "confidence bound on the candidate's mean clears it.",
)
@click.option(
    "--confidence",
    type=float,
    default=0.95,
    show_default=True,
    help="Confidence of each one-sided bound, between 0.5 and 1.",
)
@click.option(
    "--lower-is-better",
    is_flag=True,
    help="The metric improves downwards (perplexity, error rate).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Bootstrap seed, for non-binary metrics; the same seed gives the same decision.",
)
def gate_cmd(
    candidate: Path,
    reference: Path,
    metric: str,
    margin: float | None,
    floor: float | None,
    confidence: float,
    lower_is_better: bool,
    seed: int,
) -> None:
    """Decide whether a candidate model may replace the reference model.

    Pairs the two models' scores item by item (by doc_id) and passes only when every criterion
    given holds at the stated confidence: with --margin, the candidate is no worse than the
    reference by more than MARGIN (non-inferiority, a one-sided bound on the paired
    difference); with --floor, the candidate's mean clears FLOOR. Binary metrics use exact
    Clopper-Pearson bounds, others a seeded BCa bootstrap.

    Prints one JSON object (passed, estimate, interval, n, margin, reason, ...) and exits 0 when
    the gate passes, 1 when it does not, 2 on bad input (unreadable files, different items,
    bad settings).
    """
    # Imported here: workflows.cli imports this module, and numpy is only needed when gating.
    from evals.gate import gate_files
    from workflows.cli import _friendly

    decision = _friendly(gate_files)(
        candidate,
        reference,
        metric,
        margin=margin,
        floor=floor,
        confidence=confidence,
        higher_is_better=not lower_is_better,
        seed=seed,
    )
    click.echo(decision.to_json())
    raise SystemExit(0 if decision.passed else 1)

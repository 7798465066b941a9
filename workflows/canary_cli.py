"""The `llmflow canary` commands: judge a canary deployment against the stable one."""

from __future__ import annotations

from pathlib import Path

import click

probes_file = click.Path(exists=True, dir_okay=False, path_type=Path)

EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
"""Exit status per verdict; 2 is bad input, as click and `_friendly` use it."""


@click.group("canary")
def canary_group() -> None:
    """Analyse canary deployments of a model server."""


@canary_group.command("judge")
@click.option(
    "--stable",
    required=True,
    type=probes_file,
    help="The stable deployment's probe records: JSONL, one request per line (prompt_id, "
    "prompt_tokens, output_tokens, ttft_s, itl_s, e2e_s, ok, score).",
)
@click.option(
    "--canary",
    required=True,
    type=probes_file,
    help="The canary's probe records, same format.",
)
@click.option(
    "--policy",
    "policy_path",
    type=probes_file,
    help="YAML mapping of policy overrides (latency_tolerance, error_rate_tolerance, "
    "quality_margin, confidence, min_samples, ...); default: the built-in policy.",
)
def judge_cmd(stable: Path, canary: Path, policy_path: Path | None) -> None:
    """Decide whether a canary may replace the stable deployment: PASS, FAIL or INCONCLUSIVE.

    Compares median and p95 of time to first token and inter-token latency at equal prompt
    length (paired by prompt_id when both arms answered the same prompts, else within
    prompt-length strata), the worst prompt-length stratum, the error rate and answer quality,
    each with an interval at the policy's confidence. FAIL when some interval lies beyond its
    tolerance, PASS when every interval lies inside, INCONCLUSIVE otherwise or with too few
    samples.

    Prints one JSON object (verdict, reason, and per check the estimate, interval, n and
    reason) and exits 0 on PASS, 1 on FAIL, 3 on INCONCLUSIVE, 2 on bad input.
    """
    # Imported here: workflows.cli imports this module, and numpy is only needed when judging.
    from serving.judge import judge_files
    from workflows.cli import _friendly

    judgement = _friendly(judge_files)(stable, canary, policy_path)
    click.echo(judgement.to_json())
    raise SystemExit(EXIT_CODES[judgement.verdict])

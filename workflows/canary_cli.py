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


@canary_group.command("probe")
@click.option(
    "--url", required=True, help="The (stable) server's root, e.g. http://127.0.0.1:8000."
)
@click.option(
    "--canary-url",
    help="A second server (the canary) sent the same prompts at the same time; needs --canary-out.",
)
@click.option("--model", required=True, help="The served model name (--served-model-name).")
@click.option(
    "--prompts",
    "probe_set",
    default="tiny",
    show_default=True,
    help="A probe set under serving/probes/ by name, or a JSONL file of prompt_id, prompt, "
    "reference.",
)
@click.option(
    "--requests",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Requests per server, cycling through the probe set.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Position in the probe set to start at (successive batches: batch x requests).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Requests in flight per server at most.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Tokens generated per request at most.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds one request may take.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the (stable) server's records go (JSONL).",
)
@click.option(
    "--canary-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the canary's records go (JSONL).",
)
def probe_cmd(
    url: str,
    canary_url: str | None,
    model: str,
    probe_set: str,
    requests: int,
    offset: int,
    concurrency: int,
    max_tokens: int,
    timeout_s: float,
    out: Path,
    canary_out: Path | None,
) -> None:
    """Send probe prompts to a server (or two at once) and write one record per request.

    The records are what `llmflow canary judge` reads: prompt_id, prompt_tokens,
    output_tokens, ttft_s, itl_s, e2e_s, ok and score (the answer against the reference).
    A failed request is a record with ok false, not an error. Prints one JSON line per server
    (requests, ok, mean score, the file) and exits 0; 2 on bad input.
    """
    if (canary_url is None) != (canary_out is None):
        raise click.UsageError("--canary-url and --canary-out go together: give both or neither")
    import asyncio
    import json

    from serving.probe import probe, probe_arms, select_prompts, write_records
    from serving.probe_sets import load_probe_set
    from workflows.cli import _friendly

    prompts = _friendly(load_probe_set)(probe_set)
    arms: list[tuple[str, Path, list[dict[str, object]]]]
    if canary_url is None:
        chosen = select_prompts(prompts, requests, offset)
        records = asyncio.run(
            probe(
                url,
                chosen,
                model=model,
                concurrency=concurrency,
                max_tokens=max_tokens,
                timeout_s=timeout_s,
            )
        )
        arms = [(url, out, records)]
    else:
        assert canary_out is not None
        stable, canary = probe_arms(
            url,
            canary_url,
            prompts,
            model=model,
            requests=requests,
            offset=offset,
            concurrency=concurrency,
            max_tokens=max_tokens,
            timeout_s=timeout_s,
        )
        arms = [(url, out, stable), (canary_url, canary_out, canary)]
    for server, path, records in arms:
        write_records(records, path)
        scores = [r["score"] for r in records if isinstance(r["score"], float)]
        summary = {
            "url": server,
            "requests": len(records),
            "ok": sum(1 for r in records if r["ok"]),
            "mean_score": sum(scores) / len(scores) if scores else None,
            "out": str(path),
        }
        click.echo(json.dumps(summary))

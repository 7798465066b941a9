"""The `analyse-canary` step: judge one canary stage, and fail it when the canary may not go on.

Probes the stable and the canary Service with the same prompts, reads Prometheus, judges (see
`serving.analysis`), and writes the stage's report (`stage-<weight>.json` and `.png`, plus the
probe records) to the `report` output artifact. A verdict other than PASS fails the step
(exit code 1) with the reason as its last log line: the deploy pipeline's rollback hangs on
that failure, and the promotion below it is omitted, so the workflow's phase says whether the
release was promoted.

    python -m hera.workflows.runner -e steps.canary:analyse_canary <inputs.json>
"""

import json
from pathlib import Path
from typing import Annotated

from hera.workflows import Artifact, Parameter, script
from hera.workflows.io import Output

#: Where the stage report is written in the pod; the `report` output artifact collects it.
REPORT_DIR = "/tmp/llmflow/canary"


class StageVerdict(Output):
    """The stage's verdict, why, and the evidence a release records.

    `evidence` is also the workflow's global output `canary-evidence`: each stage overwrites
    it, so it holds the last stage judged, the furthest the canary got (all before it passed).
    """

    verdict: Annotated[str, Parameter(name="verdict", description="PASS, FAIL or INCONCLUSIVE")]
    reason: Annotated[str, Parameter(name="reason", description="what decided it")]
    evidence: Annotated[
        str,
        Parameter(
            name="evidence",
            description="JSON: stage, verdict, reason, each check's verdict and interval",
            global_name="canary-evidence",
        ),
    ]


@script(outputs=[Artifact(name="report", path=REPORT_DIR)])
def analyse_canary(
    stage: Annotated[int, Parameter(name="stage", description="percent of traffic on the canary")],
    stable_url: Annotated[str, Parameter(name="stable-url", description="stable Service URL")],
    canary_url: Annotated[str, Parameter(name="canary-url", description="canary Service URL")],
    served_name: Annotated[str, Parameter(name="served-name", description="model name to ask")],
    stable_version: Annotated[str, Parameter(name="stable-version", description="version label")],
    canary_version: Annotated[str, Parameter(name="canary-version", description="version label")],
    prometheus_url: Annotated[
        str, Parameter(name="prometheus-url", description="Prometheus to read; empty: none")
    ],
    prompts: Annotated[str, Parameter(name="prompts", description="probe set name")] = "tiny",
    requests: Annotated[int, Parameter(name="requests", description="per arm per batch")] = 40,
    concurrency: Annotated[int, Parameter(name="concurrency", description="per arm")] = 4,
    max_tokens: Annotated[int, Parameter(name="max-tokens", description="per answer")] = 16,
    timeout_s: Annotated[float, Parameter(name="timeout", description="per request, s")] = 60.0,
    extensions: Annotated[int, Parameter(name="extensions", description="extra batches")] = 1,
    policy: Annotated[str, Parameter(name="policy", description="JSON canary policy")] = "{}",
    offset: Annotated[int, Parameter(name="offset", description="first prompt")] = 0,
    scrape_interval: Annotated[
        float, Parameter(name="scrape-interval", description="Prometheus scrape interval, s")
    ] = 15.0,
    report_dir: Annotated[str, Parameter(name="report-dir")] = REPORT_DIR,
) -> StageVerdict:
    """Judge the canary at one traffic stage; fail unless it passes."""
    from serving.analysis import ProbeSettings, analyse_stage
    from serving.canary_report import stage_evidence, write_stage_report
    from serving.endpoints import resolve
    from serving.metrics import PrometheusSource
    from serving.policy import CanaryPolicy
    from serving.probe_sets import load_probe_set
    from steps._hera import end_judged_step, step_logger

    log = step_logger(__name__)
    the_policy = CanaryPolicy.model_validate(json.loads(policy or "{}"))

    def metrics(window_s: float) -> PrometheusSource:
        """Prometheus over the stage so far (at least a few scrapes)."""
        seconds = max(int(window_s + 0.999), int(4 * scrape_interval))
        return PrometheusSource(resolve(prometheus_url), window=f"{seconds}s")

    folder = Path(report_dir)
    analysis = analyse_stage(
        stage,
        (resolve(stable_url), resolve(canary_url)),
        (stable_version, canary_version),
        load_probe_set(prompts),
        ProbeSettings(served_name, requests, concurrency, max_tokens, timeout_s),
        the_policy,
        extensions=extensions,
        metrics=metrics if prometheus_url else None,
        records_dir=folder / "probes",
        offset=offset,
        settle_s=2 * scrape_interval,
    )
    write_stage_report(folder, analysis)
    outputs = {
        "verdict": analysis.verdict,
        "reason": analysis.reason,
        "evidence": json.dumps(stage_evidence(analysis)),
    }
    line = f"canary {analysis.verdict} at {stage}% traffic: {analysis.reason}"
    end_judged_step(analysis.verdict, line, outputs, log)
    return StageVerdict(
        verdict=outputs["verdict"], reason=outputs["reason"], evidence=outputs["evidence"]
    )

"""The `analyse-shadow` step: judge the candidate under mirrored live traffic, fail unless PASS.

Runs while the HTTPRoute mirrors a fraction of live requests to the candidate (every client is
answered by stable). Holds the window open, reads Prometheus per version, probes quality, and
writes `shadow.json` and the probe records to the `report` output artifact (see
`serving.shadow`). A verdict other than PASS fails the step with the verdict and its evidence
as its last log line: the deploy pipeline's rollback hangs on that failure, before any user
was served by the candidate.

    python -m hera.workflows.runner -e steps.shadow:analyse_shadow <inputs.json>
"""

import json
from pathlib import Path
from typing import Annotated

from hera.workflows import Artifact, Parameter, script
from hera.workflows.io import Output

#: Where the report is written in the pod; the `report` output artifact collects it.
REPORT_DIR = "/tmp/llmflow/shadow"


class ShadowVerdict(Output):
    """The shadow's verdict, why, and the evidence a release records (global `shadow-evidence`)."""

    verdict: Annotated[str, Parameter(name="verdict", description="PASS, FAIL or INCONCLUSIVE")]
    reason: Annotated[str, Parameter(name="reason", description="what decided it")]
    evidence: Annotated[
        str,
        Parameter(
            name="evidence",
            description="JSON: verdict, reason, window, requests, each check's verdict",
            global_name="shadow-evidence",
        ),
    ]


@script(outputs=[Artifact(name="report", path=REPORT_DIR)])
def analyse_shadow(
    stable_url: Annotated[str, Parameter(name="stable-url", description="stable Service URL")],
    candidate_url: Annotated[
        str, Parameter(name="candidate-url", description="the candidate's Service URL")
    ],
    served_name: Annotated[str, Parameter(name="served-name", description="model name to ask")],
    stable_version: Annotated[str, Parameter(name="stable-version", description="version label")],
    candidate_version: Annotated[
        str, Parameter(name="candidate-version", description="version label")
    ],
    prometheus_url: Annotated[str, Parameter(name="prometheus-url", description="Prometheus")],
    fraction: Annotated[float, Parameter(name="fraction", description="share mirrored")],
    duration: Annotated[
        float, Parameter(name="duration", description="window length, s; 0: until requests")
    ] = 0.0,
    requests_: Annotated[
        int, Parameter(name="shadow-requests", description="requests that close the window")
    ] = 0,
    window_timeout: Annotated[
        float, Parameter(name="window-timeout", description="longest window, s")
    ] = 1800.0,
    prompts: Annotated[str, Parameter(name="prompts", description="probe set name")] = "tiny",
    requests: Annotated[int, Parameter(name="requests", description="per arm per batch")] = 40,
    concurrency: Annotated[int, Parameter(name="concurrency", description="per arm")] = 4,
    max_tokens: Annotated[int, Parameter(name="max-tokens", description="per answer")] = 16,
    timeout_s: Annotated[float, Parameter(name="timeout", description="per request, s")] = 60.0,
    extensions: Annotated[int, Parameter(name="extensions", description="extra batches")] = 1,
    policy: Annotated[str, Parameter(name="policy", description="JSON canary policy")] = "{}",
    scrape_interval: Annotated[
        float, Parameter(name="scrape-interval", description="Prometheus scrape interval, s")
    ] = 15.0,
    report_dir: Annotated[str, Parameter(name="report-dir")] = REPORT_DIR,
) -> ShadowVerdict:
    """Judge the candidate on mirrored traffic; fail unless it passes."""
    from serving.analysis import ProbeSettings
    from serving.endpoints import resolve
    from serving.policy import CanaryPolicy
    from serving.probe_sets import load_probe_set
    from serving.shadow import ShadowSettings, analyse_shadow, evidence, shadow_report, summary
    from steps._hera import end_judged_step, step_logger

    log = step_logger(__name__)
    settings = ShadowSettings(
        fraction=fraction,
        duration_s=duration or None,
        requests=requests_ or None,
        timeout_s=window_timeout,
        scrape_interval_s=scrape_interval,
    )
    if not prometheus_url.strip():
        # The canary can be judged by the probe alone; a shadow has no other view of live
        # traffic than Prometheus's.
        reason = (
            "prometheus-url is empty, and a shadow judges the mirrored live traffic from "
            "Prometheus: give prometheus-url, or remove serving.shadow"
        )
        outputs = {
            "verdict": "FAIL",
            "reason": reason,
            "evidence": json.dumps({"verdict": "FAIL", "reason": reason, "checks": {}}),
        }
        end_judged_step("FAIL", f"shadow FAIL: {reason}", outputs, log)
    window = f"{duration:g} s" if duration else f"{requests_} candidate requests"
    log.info(
        "shadow: mirroring %g of live traffic to %s for %s", fraction, candidate_version, window
    )
    folder = Path(report_dir)
    analysis = analyse_shadow(
        resolve(prometheus_url),
        (resolve(stable_url), resolve(candidate_url)),
        (stable_version, candidate_version),
        load_probe_set(prompts),
        ProbeSettings(served_name, requests, concurrency, max_tokens, timeout_s),
        CanaryPolicy.model_validate(json.loads(policy or "{}")),
        settings,
        extensions=extensions,
        records_dir=folder / "probes",
    )
    folder.mkdir(parents=True, exist_ok=True)
    report = json.dumps(shadow_report(analysis), indent=2, allow_nan=False)
    (folder / "shadow.json").write_text(report + "\n")
    log.info("evidence: %s", summary(analysis))
    outputs = {
        "verdict": analysis.verdict,
        "reason": analysis.reason,
        "evidence": json.dumps(evidence(analysis)),
    }
    end_judged_step(analysis.verdict, f"shadow {analysis.verdict}: {analysis.reason}", outputs, log)
    return ShadowVerdict(
        verdict=outputs["verdict"], reason=outputs["reason"], evidence=outputs["evidence"]
    )

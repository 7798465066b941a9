"""The `gate` step: decide from both models' per-item results whether the candidate passes.

Reads `samples_<task>.jsonl` under the candidate's and the reference's results URIs (what the
`evaluate-*` steps wrote), runs each gate of the spec (`evals.gate`), writes the report
(`index.html`, `gate.png`, `decision.json`) to `<output>/` and to the step's `report` output
artifact, and outputs `passed` plus one line of evidence per gate. A failed gate is an
answer, not an error: the step succeeds and `passed` is false, for a `when` further on.

    python -m hera.workflows.runner -e steps.gate:gate_evaluation <inputs.json>
"""

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from hera.workflows import Artifact, Parameter, script
from hera.workflows.io import Output

from steps import storage
from steps._hera import S3_ENV, step_logger
from steps.errors import StepError

#: Where the report is written in the pod; the `report` output artifact collects it.
REPORT_DIR = "/tmp/llmflow/report"


class GateResult(Output):
    """The verdict and its evidence."""

    passed: Annotated[bool, Parameter(name="passed", description="every gate passed")]
    decision: Annotated[
        str, Parameter(name="decision", description="one line per gate: verdict, estimate, bound")
    ]
    report: Annotated[str, Parameter(name="report", description="URI of the report page")]


@script(env=S3_ENV, outputs=[Artifact(name="report", path=REPORT_DIR)])
def gate_evaluation(
    candidate_results: Annotated[
        str, Parameter(name="candidate-results", description="results URI of the candidate")
    ],
    gates: Annotated[str, Parameter(name="gates", description="JSON list of gates")],
    output: Annotated[str, Parameter(name="output", description="URI for the report")],
    suite: Annotated[str, Parameter(name="suite", description="the suite both ran")] = "tiny",
    reference_results: Annotated[
        str, Parameter(name="reference-results", description="results URI of the reference")
    ] = "",
    report_dir: Annotated[str, Parameter(name="report-dir")] = REPORT_DIR,
) -> GateResult:
    """Gate the candidate against the reference and write the report."""
    from evals.catalog import suite_tasks
    from evals.gate import decide, gate_files
    from evals.report import write_report
    from evals.samples import read_samples

    log = step_logger(__name__)
    known = {task.name: task for task in suite_tasks(suite)}  # built-in families included
    decisions = []
    with tempfile.TemporaryDirectory() as tmp:
        fetched: dict[tuple[str, str], Path] = {}

        def samples(results: str, task: str, role: str) -> Path:
            """Each task's per-sample file, downloaded once however many gates read it."""
            if (role, task) not in fetched:
                fetched[role, task] = _fetch(results, task, Path(tmp) / role)
            return fetched[role, task]

        for gate in _gates(gates):
            task, _, metric = gate["metric"].partition("/")
            if task not in known or metric not in known[task].metrics:
                raise StepError(f"gate metric {gate['metric']!r}: not a metric of suite {suite!r}")
            settings = {
                "margin": gate.get("margin"),
                "floor": gate.get("floor"),
                "confidence": gate.get("confidence", 0.95),
                "higher_is_better": known[task].metrics[metric],
            }
            candidate = samples(candidate_results, task, "candidate")
            if reference_results:
                reference = samples(reference_results, task, "reference")
                decision = gate_files(candidate, reference, metric, **settings)
            elif settings["margin"] is not None:
                raise StepError(f"gate {gate['metric']!r} has a margin but no reference results")
            else:  # a floor alone judges the candidate by itself
                scores = list(read_samples(candidate, metric).values())
                decision = decide(scores, scores, metric, **settings)
            record = {**decision.to_dict(), "metric": gate["metric"]}
            decisions.append(record)
            log.info("%s", _line(record))
    provenance = {
        "candidate results": candidate_results,
        "reference results": reference_results or "(none: floors only)",
        **_provenance(candidate_results),
    }
    folder = Path(report_dir)
    page = write_report(decisions, provenance, folder)
    for item in sorted(folder.iterdir()):
        storage.upload(item, storage.join(output, item.name))
    return GateResult(
        passed=all(d["passed"] for d in decisions),
        decision="\n".join(_line(d) for d in decisions),
        report=storage.join(output, page.name),
    )


def _gates(text: str) -> list[dict[str, Any]]:
    try:
        gates = json.loads(text)
    except ValueError:
        raise StepError(f"gates: {text[:200]!r} is not a JSON list of gates") from None
    if not isinstance(gates, list) or not gates:
        raise StepError("gates: give a non-empty JSON list of {metric, margin, floor, confidence}")
    return gates


def _fetch(results: str, task: str, folder: Path) -> Path:
    """Bring `samples_<task>.jsonl` of a results URI to a local file."""
    local = folder / f"samples_{task}.jsonl"
    try:
        storage.download(storage.join(results, f"samples_{task}.jsonl"), local)
    except (OSError, StepError) as exc:
        raise StepError(f"{results}: no per-sample results of task {task!r}: {exc}") from None
    return local


def _provenance(results: str) -> dict[str, Any]:
    text = storage.read_text(storage.join(results, "provenance.json"))
    return {} if text is None else dict(json.loads(text))


def _line(d: dict[str, Any]) -> str:
    """`PASS task/metric: +0.1500 (95% lower bound -0.0200 > -margin 0.05, n=40)`."""
    verdict = "PASS" if d["passed"] else "FAIL"
    lower = "-inf" if d.get("lower") is None else f"{d['lower']:+.4f}"
    margin = "" if d.get("margin") is None else f", margin {d['margin']}"
    floor = "" if d.get("floor") is None else f", floor {d['floor']}"
    return (
        f"{verdict} {d['metric']}: candidate {d['candidate_mean']:.4f} vs reference "
        f"{d['reference_mean']:.4f}, difference {d['estimate']:+.4f} "
        f"({d['confidence']:.0%} lower bound {lower}{margin}{floor}, n={d['n']})"
    )


@script()
def require_gate(
    decision: Annotated[str, Parameter(name="decision", description="the gate's evidence")],
) -> None:
    """Fail, with the gate's evidence, so that a watching run (a schedule) fails loudly."""
    raise StepError(f"the evaluation gate failed (report: the gate step's artifact): {decision}")

"""The evaluate pipeline: fetch candidate and reference -> evaluate both in parallel -> gate.

Both models run the same lm-eval suite with the same harness and settings, so their per-item
scores can be paired; results are reused when the same weights (by content digest), suite and
settings were evaluated before (the reference, usually the model in production, always was).
The `gate` step decides per metric, with its interval and evidence, writes the report (an HTML
page and a PNG chart, also an output artifact the Argo UI shows) and outputs `passed` for a
`when` further on.
"""

from __future__ import annotations

import json

from hera.workflows import DAG, Parameter, Workflow

from steps.evaluate import evaluate_model
from steps.gate import gate_evaluation, require_gate
from workflows._common import (
    fetch_model,
    main_input,
    main_outputs,
    model_parameters,
    new_workflow,
    param,
)
from workflows.exceptions import SpecError
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec

NAME = "evaluate"

#: Where this run's results go.
RUN_OUTPUT = "{{workflow.parameters.eval-output}}/{{workflow.name}}"


def evaluate_parameters(spec: ReleaseSpec) -> list[Parameter]:
    """Workflow parameters: what is compared, with which suite and settings, under which gates."""
    assert spec.evaluate is not None
    ev = spec.evaluate
    return [
        Parameter(name="candidate", value=ev.candidate, description="weights to judge (URI)"),
        Parameter(
            name="reference",
            value=ev.reference or "",
            description="weights in production, compared on the same items (URI; empty: none)",
        ),
        Parameter(name="suite", value=ev.suite, description="the lm-eval suite under evals/"),
        Parameter(
            name="eval-output",
            value=ev.output,
            description="URI prefix; each run writes under <eval-output>/<workflow name>/",
        ),
        Parameter(name="batch-size", value=str(ev.batch_size), description="lm-eval batch size"),
        Parameter(name="seed", value=str(ev.seed), description="lm-eval seed"),
        Parameter(name="limit", value=str(ev.limit), description="items per task; 0: all"),
        Parameter(
            name="fail-on-gate",
            value="false",
            enum=["false", "true"],
            description="true: a failed gate fails the workflow (a schedule watching production);"
            " false: it outputs passed=false for a `when` further on",
        ),
        Parameter(
            name="gates",
            value=json.dumps([g.model_dump(exclude_none=True) for g in ev.gates]),
            description="JSON list of gates: metric (task/metric), margin, floor, confidence",
        ),
    ]


def build(spec: ReleaseSpec) -> Workflow:
    """The evaluate Workflow for a release spec with an `evaluate` section."""
    if spec.evaluate is None:
        raise SpecError(
            "the evaluate pipeline needs an 'evaluate' section in the release spec "
            "(suite, candidate, reference, output, gates); see releases/tiny.yaml"
        )
    parameters = model_parameters(spec) + evaluate_parameters(spec)
    with new_workflow(spec, NAME, parameters) as workflow:
        settings = {
            name: param(workflow, name) for name in ("suite", "batch-size", "seed", "limit")
        }
        outputs = {
            name: f"{{{{tasks.gate-evaluation.outputs.parameters.{name}}}}}"
            for name in ("passed", "decision")
        }
        # The candidate is `main`'s input: a release passes the checkpoint it just trained.
        with DAG(name="main", inputs=[Parameter(name="candidate")], outputs=main_outputs(outputs)):
            arms = {}
            for role in ("candidate", "reference"):
                if role == "reference" and spec.evaluate.reference is None:
                    continue
                fetched = fetch_model(
                    workflow,
                    source=role,
                    name=f"fetch-{role}",
                    source_value=main_input(role) if role == "candidate" else None,
                )
                evaluated = evaluate_model(
                    name=f"evaluate-{role}",
                    arguments={
                        **settings,
                        "model-path": fetched.get_parameter("path"),
                        "model-digest": fetched.get_parameter("digest"),
                        "label": role,
                        "output": f"{RUN_OUTPUT}/{role}",
                        "reuse": "{{workflow.parameters.eval-output}}/by-content",
                    },
                )
                fetched >> evaluated  # type: ignore[operator]  # Hera's call unions
                arms[role] = evaluated
            gate = gate_evaluation(
                arguments={
                    "candidate-results": arms["candidate"].get_parameter("results-uri"),
                    "reference-results": arms["reference"].get_parameter("results-uri")
                    if "reference" in arms
                    else "",
                    "gates": param(workflow, "gates"),
                    "suite": param(workflow, "suite"),
                    "output": f"{RUN_OUTPUT}/gate",
                }
            )
            list(arms.values()) >> gate  # type: ignore[operator]
            required = require_gate(
                arguments={"decision": gate.get_parameter("decision")},
                when=f"{param(workflow, 'fail-on-gate')} == true && "
                "{{tasks.gate-evaluation.outputs.parameters.passed}} == false",
            )
            gate >> required  # type: ignore[operator]
    return workflow


PIPELINE = Pipeline(
    NAME, "evaluate candidate and reference with lm-eval, gate on paired non-inferiority", build
)

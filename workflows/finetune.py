"""The finetune pipeline: fetch base weights -> train (PyTorchJob or TrainJob) -> record.

The training job is created by an Argo resource template and watched through its status
(success and failure conditions), so the Argo UI shows it as a step; `record-training`
then turns the job's summary into outputs (checkpoint URI, final loss, tokens/s). Each run
writes under `<finetune.output>/<workflow name>/`, so a restarted job resumes from its own
checkpoints and runs never overwrite each other.
"""

from __future__ import annotations

import yaml
from hera.workflows import DAG, Parameter, Resource, Workflow
from hera.workflows.models import ValueFrom

from steps.finetune import record_training
from workflows._common import fetch_model, main_outputs, model_parameters, new_workflow
from workflows.exceptions import SpecError
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec
from workflows.training import pytorchjob, trainjob
from workflows.training.pod import TrainerCommand

NAME = "finetune"

#: Where this run's checkpoints, final model and summary go.
RUN_OUTPUT = "{{workflow.parameters.output}}/{{workflow.name}}"


def finetune_parameters(spec: ReleaseSpec) -> list[Parameter]:
    """Workflow parameters for the data and where results go."""
    assert spec.finetune is not None
    return [
        Parameter(
            name="dataset",
            value=spec.finetune.dataset,
            description="JSONL of prompt/response rows (s3:// or file://)",
        ),
        Parameter(
            name="output",
            value=spec.finetune.output,
            description="URI prefix; each run writes under <output>/<workflow name>/",
        ),
    ]


def build(spec: ReleaseSpec) -> Workflow:
    """The finetune Workflow for a release spec with a `finetune` section."""
    if spec.finetune is None:
        raise SpecError(
            "the finetune pipeline needs a 'finetune' section in the release spec "
            "(dataset, output, method, ...); see releases/tiny.yaml"
        )
    ft = spec.finetune
    cmd = TrainerCommand(
        model="{{inputs.parameters.model-path}}",
        data="{{workflow.parameters.dataset}}",
        output=RUN_OUTPUT,
        finetune=ft,
    )
    job_name = "{{workflow.name}}-train"
    image = "{{workflow.parameters.image}}"
    if ft.launcher == "pytorchjob":
        manifest = pytorchjob.build_pytorchjob(job_name, spec, cmd, image)
        conditions = (pytorchjob.SUCCESS_CONDITION, pytorchjob.FAILURE_CONDITION)
    else:
        manifest = trainjob.build_trainjob(job_name, spec, cmd, image)
        conditions = (trainjob.SUCCESS_CONDITION, trainjob.FAILURE_CONDITION)
    with new_workflow(spec, NAME, model_parameters(spec) + finetune_parameters(spec)) as workflow:
        train = Resource(
            name="train",
            action="create",
            manifest=yaml.safe_dump(manifest, sort_keys=False),
            success_condition=conditions[0],
            failure_condition=conditions[1],
            inputs=[Parameter(name="model-path", description="the base model in the cache")],
            outputs=[Parameter(name="job", value_from=ValueFrom(json_path="{.metadata.name}"))],
        )
        outputs = {
            name: f"{{{{tasks.record-training.outputs.parameters.{name}}}}}"
            for name in ("checkpoint", "final-loss", "steps", "tokens-per-second")
        }
        with DAG(name="main", outputs=main_outputs(outputs)):
            fetched = fetch_model(workflow)
            trained = train(arguments={"model-path": fetched.get_parameter("path")})
            recorded = record_training(arguments={"output": RUN_OUTPUT})
            fetched >> trained >> recorded  # type: ignore[operator]  # Hera's call unions
    return workflow


PIPELINE = Pipeline(
    NAME, "fine-tune the model with a PyTorchJob or TrainJob, record the result", build
)

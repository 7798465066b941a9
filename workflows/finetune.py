"""The finetune pipeline: fetch base weights (and check the settings) -> train -> record.

The training job is created by an Argo resource template and watched through its status
(success and failure conditions), so the Argo UI shows it as a step; `record-training`
then turns the job's summary into outputs (checkpoint URI, final loss, tokens/s). Each run
writes under `<finetune.output>/<workflow name>/`, so a restarted job resumes from its own
checkpoints and runs never overwrite each other.

The job lives no longer than the run that made it. It carries an owner reference to the
Workflow (`setOwnerReference`), so deleting the workflow deletes the job; and the exit handler
`stop-training` deletes it as soon as the workflow ends other than Succeeded (stopped, failed,
past its deadline), so a stopped run frees its nodes and GPUs at once rather than when the job
would have finished. A succeeded job stays (with its pods' logs) until the workflow goes.

The knobs a person changes per run (method, epochs, learning rate, batch size, LoRA rank and
alpha, nodes) are workflow parameters with the spec's values as defaults; the job manifest
reads them. `check-training` checks them with the spec's rules before a job is created, and
`steps.train` again at start (`steps/train_knobs.py`).
"""

from __future__ import annotations

from typing import Any, get_args

import yaml
from hera.workflows import DAG, Parameter, Resource, Steps, Workflow
from hera.workflows.models import ValueFrom

from steps.finetune import check_training, record_training
from steps.train_knobs import ORIGINS, Method
from workflows._common import fetch_model, main_outputs, model_parameters, new_workflow, param
from workflows.exceptions import SpecError
from workflows.manifest_text import manifest_text
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec
from workflows.training import pytorchjob, trainjob
from workflows.training.pod import TrainerCommand

NAME = "finetune"

#: Where this run's checkpoints, final model and summary go.
RUN_OUTPUT = "{{workflow.parameters.output}}/{{workflow.name}}"

#: The training job's name: one job per run (a release's too, as it calls `main` here).
JOB_NAME = "{{workflow.name}}-train"

#: The training job's templates: any number of nodes, and (PyTorchJob) one node.
TRAIN = "train"
TRAIN_ONE_NODE = "train-one-node"

#: The exit handler, and its template that deletes the training job.
STOP_TRAINING = "stop-training"
DELETE_TRAINING_JOB = "delete-training-job"


def finetune_parameters(spec: ReleaseSpec) -> list[Parameter]:
    """Workflow parameters: the data, where results go, and the knobs a run may change."""
    assert spec.finetune is not None
    ft = spec.finetune
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
        Parameter(
            name="method",
            value=ft.method,
            enum=list(get_args(Method)),
            description="full: train every weight; lora: train low-rank adapters, merged on save",
        ),
        Parameter(name="epochs", value=str(ft.epochs), description="passes over the data (>= 1)"),
        Parameter(
            name="learning-rate",
            value=str(ft.learning_rate),
            description="AdamW learning rate (> 0)",
        ),
        Parameter(
            name="train-batch-size",
            value=str(ft.batch_size),
            description="examples per step on each process (>= 1)",
        ),
        Parameter(
            name="lora-rank",
            value=str(ft.lora.rank),
            description="adapter rank, method lora (> 0; 8-64 is usual)",
        ),
        Parameter(
            name="lora-alpha",
            value=str(ft.lora.alpha),
            description="adapter scaling, method lora (> 0)",
        ),
        Parameter(
            name="train-replicas",
            value=str(ft.replicas),
            description="nodes (pods) of the training job (>= 1), each with "
            f"{ft.procs_per_replica} process(es)",
        ),
    ]


def job_reference(spec: ReleaseSpec) -> dict[str, Any]:
    """Kind, name and namespace of the run's training job: what the exit handler deletes."""
    assert spec.finetune is not None
    if spec.finetune.launcher == "pytorchjob":
        api_version, kind = pytorchjob.API_VERSION, pytorchjob.KIND
    else:
        api_version, kind = trainjob.API_VERSION, trainjob.KIND
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": JOB_NAME, "namespace": spec.namespace},
    }


def stop_training(spec: ReleaseSpec) -> Resource:
    """Delete the run's training job (none is no error: Argo deletes with --ignore-not-found)."""
    return Resource(
        name=DELETE_TRAINING_JOB,
        action="delete",
        manifest=yaml.safe_dump(job_reference(spec), sort_keys=False),
    )


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
    image = "{{workflow.parameters.image}}"
    if ft.launcher == "pytorchjob":
        conditions = (pytorchjob.SUCCESS_CONDITION, pytorchjob.FAILURE_CONDITION)
        # A PyTorchJob's Worker group has at least one replica (the operator's webhook), so
        # one node is a job of its own shape, picked when the run's node count is 1.
        manifests = {
            TRAIN: pytorchjob.build_pytorchjob(JOB_NAME, spec, cmd, image),
            TRAIN_ONE_NODE: pytorchjob.build_pytorchjob(JOB_NAME, spec, cmd, image, workers=False),
        }
    else:
        conditions = (trainjob.SUCCESS_CONDITION, trainjob.FAILURE_CONDITION)
        manifests = {TRAIN: trainjob.build_trainjob(JOB_NAME, spec, cmd, image)}
    with new_workflow(spec, NAME, model_parameters(spec) + finetune_parameters(spec)) as workflow:
        workflow.on_exit = STOP_TRAINING
        trains = {
            name: Resource(
                name=name,
                action="create",
                manifest=manifest_text(manifest),
                set_owner_reference=True,
                success_condition=conditions[0],
                failure_condition=conditions[1],
                inputs=[Parameter(name="model-path", description="the base model in the cache")],
                outputs=[Parameter(name="job", value_from=ValueFrom(json_path="{.metadata.name}"))],
            )
            for name, manifest in manifests.items()
        }
        outputs = {
            name: f"{{{{tasks.record-training.outputs.parameters.{name}}}}}"
            for name in ("checkpoint", "final-loss", "steps", "tokens-per-second")
        }
        with DAG(name="main", outputs=main_outputs(outputs)):
            fetched = fetch_model(workflow)
            check_training(
                arguments={ORIGINS[name][0]: param(workflow, ORIGINS[name][0]) for name in ORIGINS}
                | {"s3-secret": param(workflow, "s3-secret")}
            )
            model = {"model-path": fetched.get_parameter("path")}
            ready = "fetch-weights && check-training"
            if len(trains) == 1:
                trains[TRAIN](arguments=model, depends=ready)
                done = f"{TRAIN}.Succeeded"
            else:
                nodes = param(workflow, "train-replicas")
                trains[TRAIN](arguments=model, depends=ready, when=f"{nodes} > 1")
                trains[TRAIN_ONE_NODE](arguments=model, depends=ready, when=f"{nodes} == 1")
                done = f"{TRAIN}.Succeeded || {TRAIN_ONE_NODE}.Succeeded"
            record_training(arguments={"output": RUN_OUTPUT}, depends=done)
        delete_job = stop_training(spec)
        with Steps(name=STOP_TRAINING):
            delete_job(when="{{workflow.status}} != Succeeded")
    return workflow


PIPELINE = Pipeline(
    NAME, "fine-tune the model with a PyTorchJob or TrainJob, record the result", build
)

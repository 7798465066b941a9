"""The training knobs a run may change: one set of rules for the spec, the run and the program.

A person starting `finetune` from the Argo UI types the method, epochs, learning rate, batch
size, LoRA rank and alpha and node count as workflow parameters; no spec validation stands
between the form and the training job. So the rules live here, once: the release spec's
`finetune` section is built from these types (checked at `llmflow lint`); the pipeline's
`check-training` step checks the run's values before the job is created, so a typo fails the
run with its reason as the workflow's message instead of a job that crash-loops on GPUs; and
`steps.train` checks what it is given again at start, with the same wording.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Method = Literal["full", "lora"]
Epochs = Annotated[int, Field(ge=1, description="passes over the data")]
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False, description="AdamW learning rate")]
BatchSize = Annotated[int, Field(ge=1, description="examples per step on each process")]
LoraRank = Annotated[int, Field(gt=0, description="adapter rank; 8-64 is usual")]
LoraAlpha = Annotated[int, Field(gt=0, description="adapter scaling")]
Replicas = Annotated[int, Field(ge=1, description="pods (nodes) in the job")]


class TrainKnobs(BaseModel):
    """The knobs `steps.train` takes from workflow parameters, checked as the spec checks them.

    No defaults: the program's flags have them (`steps.train.TrainConfig`).
    """

    model_config = ConfigDict(extra="forbid")

    method: Method
    epochs: Epochs
    learning_rate: LearningRate
    batch_size: BatchSize
    lora_rank: LoraRank
    lora_alpha: LoraAlpha


class RunKnobs(TrainKnobs):
    """The knobs of a run: the program's, and the job's node count."""

    replicas: Replicas


#: Where each knob comes from: the workflow parameter, and its field in the release spec. (The
#: batch size is `train-batch-size`: a release has evaluate's `batch-size` too.)
ORIGINS: dict[str, tuple[str, str]] = {
    "method": ("method", "finetune.method"),
    "epochs": ("epochs", "finetune.epochs"),
    "learning_rate": ("learning-rate", "finetune.learning_rate"),
    "batch_size": ("train-batch-size", "finetune.batch_size"),
    "lora_rank": ("lora-rank", "finetune.lora.rank"),
    "lora_alpha": ("lora-alpha", "finetune.lora.alpha"),
    "replicas": ("train-replicas", "finetune.replicas"),
}

#: The program's knobs (`steps.train` flags), in ORIGINS' order.
PROGRAM_KNOBS = tuple(TrainKnobs.model_fields)


class KnobError(ValueError):
    """Knob values that break the rules; one line per value, naming its parameter and field."""


def check_knobs(values: dict[str, str], model: type[TrainKnobs] = TrainKnobs) -> TrainKnobs:
    """Parse knob values given as text (parameters, flags) into `model`.

    Raises:
        KnobError: each bad value named as its workflow parameter and spec field, with the
            rule it breaks, e.g. `workflow parameter epochs = '0' (finetune.epochs): Input
            should be greater than or equal to 1`.
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0])
            parameter, field = ORIGINS.get(name, (name, name))
            value = values.get(name)
            lines.append(
                f"workflow parameter {parameter} = {value!r} ({field} in the release spec): "
                f"{error['msg']}"
            )
        raise KnobError("\n".join(lines)) from None

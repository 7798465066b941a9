"""The finetune pipeline's steps around the training job: check its settings, record its result.

`check-training` checks the knobs the run was given (typed in the Argo UI, or `--set`) before
the job is created, so a bad value fails the run in seconds with its reason, not as a job whose
pods crash-loop on GPUs until their backoff limit, whose logs the exit handler then deletes.

The training job writes `<output>/summary.json` last, after the final model; `record-training`
reads it and turns it into output parameters (checkpoint URI, final loss, tokens/s), so a
failed job registers nothing.

    python -m hera.workflows.runner -e steps.finetune:record_training <inputs.json>
"""

import json
import logging
import re
from typing import Annotated

from hera.workflows import Parameter, script
from hera.workflows.io import Output

from steps import storage
from steps._hera import S3_ENV
from steps.errors import StepError
from steps.train_knobs import ORIGINS, KnobError, RunKnobs, check_knobs

#: A Secret's name: a DNS subdomain. Checked because the job manifest's text takes it as is.
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class SettingsError(StepError):
    """The run's training settings break the release spec's rules."""


def _knob(name: str, help_text: str) -> Parameter:
    return Parameter(name=ORIGINS[name][0], description=help_text)


@script()
def check_training(
    method: Annotated[str, _knob("method", "full or lora")],
    epochs: Annotated[str, _knob("epochs", "passes over the data")],
    learning_rate: Annotated[str, _knob("learning_rate", "AdamW learning rate")],
    batch_size: Annotated[str, _knob("batch_size", "examples per step per process")],
    lora_rank: Annotated[str, _knob("lora_rank", "adapter rank")],
    lora_alpha: Annotated[str, _knob("lora_alpha", "adapter scaling")],
    replicas: Annotated[str, _knob("replicas", "nodes of the job")],
    s3_secret: Annotated[str, Parameter(name="s3-secret", description="the S3 Secret's name")],
) -> None:
    """Refuse settings the spec would refuse, naming the parameter, the value and the rule."""
    values = {
        "method": method,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "replicas": replicas,
    }
    problems = []
    try:
        check_knobs(values, RunKnobs)
    except KnobError as exc:
        problems.append(str(exc))
    if not _SECRET_NAME.fullmatch(s3_secret):
        problems.append(
            f"workflow parameter s3-secret = {s3_secret!r}: not a Secret name; use lower-case "
            "letters, digits, '-' and '.', e.g. llmflow-s3"
        )
    if problems:
        raise SettingsError("\n".join(problems))


class TrainingRecord(Output):
    """A trained checkpoint and how it was trained."""

    checkpoint: Annotated[str, Parameter(name="checkpoint", description="URI of the final model")]
    final_loss: Annotated[float, Parameter(name="final-loss")]
    tokens_per_second: Annotated[float, Parameter(name="tokens-per-second")]
    steps: Annotated[int, Parameter(name="steps")]
    resumed_from_step: Annotated[int, Parameter(name="resumed-from-step")]


@script(env=S3_ENV)
def record_training(
    output: Annotated[str, Parameter(name="output", description="the run's output URI")],
) -> TrainingRecord:
    """Read `<output>/summary.json` and return it as outputs."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    text = storage.read_text(storage.join(output, "summary.json"))
    if text is None:
        raise StepError(f"{output}/summary.json does not exist: the training job wrote no model")
    summary = json.loads(text)
    logging.getLogger(__name__).info(
        "checkpoint %s: loss %.4f after %d steps, %.0f tokens/s",
        summary["checkpoint"],
        summary["final_loss"],
        summary["steps"],
        summary["tokens_per_second"],
    )
    return TrainingRecord(
        checkpoint=summary["checkpoint"],
        final_loss=summary["final_loss"],
        tokens_per_second=summary["tokens_per_second"],
        steps=summary["steps"],
        resumed_from_step=summary["resumed_from_step"],
    )

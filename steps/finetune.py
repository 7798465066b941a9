"""The `record-training` step: register a finished training run from its summary.

The training job writes `<output>/summary.json` last, after the final model; this step reads
it and turns it into output parameters (checkpoint URI, final loss, tokens/s), so a failed
job registers nothing.

    python -m hera.workflows.runner -e steps.finetune:record_training <inputs.json>
"""

import json
import logging
from typing import Annotated

from hera.workflows import Parameter, script
from hera.workflows.io import Output

from steps import storage
from steps._hera import S3_ENV
from steps.errors import StepError


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

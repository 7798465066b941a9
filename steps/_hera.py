"""Hera defaults shared by every step template, set once before any step is decorated.

Steps run Hera's runner (`python -m hera.workflows.runner -e steps.<module>:<function>`), in
the image the workflow names in its `image` parameter, so one set of templates serves every
release and every registry.
"""

import logging

from hera.shared import global_config
from hera.workflows import Script, SecretEnv

#: The workflow parameter that names the image every step runs in.
IMAGE = "{{workflow.parameters.image}}"

#: Where the model cache volume is mounted in step pods (a local folder when run locally).
CACHE_MOUNT = "/models"

#: Name of the cache volume in rendered workflows.
CACHE_VOLUME = "model-cache"

#: The workflow parameter naming the Secret with S3 credentials (and optionally endpoint/region).
S3_SECRET = "{{workflow.parameters.s3-secret}}"

#: S3 settings for steps that touch S3, from the Secret the workflow names. Optional: pods with
#: IAM roles (IRSA, instance profiles) and file:// sources need no keys; a step that does need
#: them and finds none says so ("no S3 credentials").
S3_ENV = [
    SecretEnv(name=key, secret_name=S3_SECRET, secret_key=key, optional=True)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION")
]

#: The workflow parameter naming the Secret with the Hugging Face token (and optional mirror).
HF_SECRET = "{{workflow.parameters.hf-secret}}"

#: Hugging Face Hub settings for steps that read hf:// sources, from the Secret the workflow
#: names. Optional: public models need no token, and s3:// sources nothing from it; a step that
#: is refused says which Secret to check.
HF_ENV = [
    SecretEnv(name=key, secret_name=HF_SECRET, secret_key=key, optional=True)
    for key in ("HF_TOKEN", "HF_ENDPOINT")
]

#: A failed step's last log lines become its termination message, which Argo puts in the node's
#: message ("main: Error (exit code 1): ..."), so the workflow says why it failed.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"

global_config.set_class_defaults(
    Script,
    constructor="runner",
    image=IMAGE,
    termination_message_policy=TERMINATION_MESSAGE_POLICY,
)


def save_outputs(values: dict[str, str]) -> None:
    """Write output parameters where Hera's runner would, for a step about to fail.

    The runner writes a step's outputs only when its function returns. A judged stage that
    fails (exit 1) still has its verdict and evidence to give: Argo collects the output files
    of a failed container too, and exports their `globalName`s, so the release can record why
    a candidate stopped where it did.
    """
    import os
    from pathlib import Path

    folder = Path(os.environ.get("hera__outputs_directory", "/tmp/hera-outputs")) / "parameters"
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (folder / name).write_text(value)


def step_logger(name: str, quiet: tuple[str, ...] = ()) -> logging.Logger:
    """The step's logger, with timestamps on stderr unless logging is already set up.

    `quiet` names libraries whose INFO lines (one per request, say) would bury the step's
    own: they log warnings only.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        for library in quiet:
            logging.getLogger(library).setLevel(logging.WARNING)
    return logging.getLogger(name)


def end_judged_step(verdict: str, line: str, outputs: dict[str, str], log: logging.Logger) -> None:
    """Return on PASS; otherwise fail the step (exit 1), its outputs saved for the release.

    The verdict line is logged last either way: on failure it becomes the node's message
    (FallbackToLogsOnError), the verdict and its reason rather than a traceback, and the
    deploy pipeline's rollback hangs on the failure.
    """
    if verdict == "PASS":
        log.info(line)
        return
    save_outputs(outputs)  # the release records why the candidate stopped here
    log.error(line)
    raise SystemExit(1)

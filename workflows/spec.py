"""The release spec: one YAML file per model (`releases/<model>.yaml`), validated up front.

The spec maps one-to-one onto the pipelines' parameters, so every way of starting a pipeline
(CLI, Argo UI, schedule, git tag) goes through the same validation and the same template.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from steps.errors import SourceError
from steps.weights.sources import check_fetchable
from workflows.exceptions import SpecError

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_URI = re.compile(r"^(s3://[a-z0-9][a-z0-9.\-]+/.+|file:///.+)$")


class _Section(BaseModel):
    """Base of every spec section: unknown fields are errors, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _uri(value: str) -> str:
    """A URI steps read and write: `s3://bucket/path` or `file:///absolute/path`."""
    if not _URI.match(value):
        raise ValueError("must be s3://bucket/path or file:///absolute/path")
    return value.rstrip("/")


def _dns_label(value: str, what: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{what} must be a Kubernetes name: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


class StorageSpec(_Section):
    """Which Kubernetes Secret gives steps their S3 credentials and endpoint.

    The Secret holds `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, and optionally
    `AWS_ENDPOINT_URL` (MinIO, Ceph, any S3-compatible store) and `AWS_REGION`. Manifests name
    the Secret; its values are read by the pods at run time and appear in no manifest or log.
    """

    credentials_secret: str = Field(
        default="llmflow-s3", description="Secret with the S3 credentials and endpoint"
    )

    @field_validator("credentials_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _dns_label(value, "a Secret name")


class CacheSpec(_Section):
    """The node-local weights cache shared by fine-tune, eval and serving pods."""

    volume: Literal["pvc", "host"] = Field(
        default="pvc", description="pvc: a PersistentVolumeClaim; host: a node-local hostPath"
    )
    claim_name: str = "llmflow-model-cache"
    host_path: str = "/var/lib/llmflow/models"
    verify: Literal["stat", "full"] = Field(
        default="stat",
        description="stat: a hit compares sizes and modification times with the manifest; "
        "full: a hit re-hashes every file",
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    chunk_mib: Annotated[int, Field(ge=1, le=1024)] = 8

    @field_validator("host_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path, e.g. /models")
        return value

    @field_validator("claim_name")
    @classmethod
    def _claim(cls, value: str) -> str:
        return _dns_label(value, "a PersistentVolumeClaim name")


class ModelSpec(_Section):
    """The model a release is about: its name, where its weights come from, how they are cached."""

    name: str = Field(description="the model's name, used in cache paths and object names")
    source: str = Field(description="s3://bucket/prefix, hf://org/name@revision or file:///path")
    cache: CacheSpec = CacheSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "the model name")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        try:
            check_fetchable(value)
        except SourceError as exc:
            raise ValueError(str(exc)) from None
        return value


class LoraSpec(_Section):
    """Low-rank adapters: trained instead of the full weights, merged into them on save."""

    rank: Annotated[int, Field(gt=0, description="adapter rank; 8-64 is usual")] = 8
    alpha: Annotated[int, Field(gt=0, description="adapter scaling")] = 16


class TolerationSpec(_Section):
    """A toleration for tainted (e.g. GPU) nodes."""

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class NodePoolSpec(_Section):
    """Where training pods run: whether those nodes have GPUs, and how to land on them."""

    gpu: bool = Field(default=False, description="the pool's nodes have GPUs")
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[TolerationSpec] = Field(default_factory=list)


class FinetuneSpec(_Section):
    """How the finetune pipeline trains: data, method, scale, and the job that runs it."""

    dataset: str = Field(description="JSONL of prompt/response rows: s3://... or file:///...")
    output: str = Field(description="URI prefix for checkpoints, the final model, the summary")
    method: Literal["full", "lora"] = "full"
    lora: LoraSpec = LoraSpec()
    epochs: Annotated[int, Field(ge=1)] = 3
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(ge=1)] = 8
    checkpoint_every: Annotated[int, Field(ge=0, description="steps; 0: only at the end")] = 10
    replicas: Annotated[int, Field(ge=1, description="pods (nodes) in the job")] = 1
    procs_per_replica: Annotated[int, Field(ge=1, description="processes per pod")] = 1
    gpus_per_replica: Annotated[int, Field(ge=0)] = 0
    cpu: str = Field(default="1", description="CPU request per replica")
    memory: str = Field(default="4Gi", description="memory request and limit per replica")
    node_pool: NodePoolSpec = NodePoolSpec()
    launcher: Literal["pytorchjob", "trainjob"] = Field(
        default="pytorchjob",
        description="pytorchjob: Kubeflow training operator v1; trainjob: Kubeflow Trainer v2",
    )
    runtime: str = Field(default="torch-distributed", description="TrainJob runtime name")
    backoff_limit: Annotated[int, Field(ge=0, description="restarts before the job fails")] = 3
    active_deadline_seconds: Annotated[int, Field(gt=0)] | None = None

    @field_validator("dataset", "output")
    @classmethod
    def _uri(cls, value: str) -> str:
        return _uri(value)

    @model_validator(mode="after")
    def _gpus_need_a_gpu_pool(self) -> FinetuneSpec:
        if self.gpus_per_replica > 0 and not self.node_pool.gpu:
            raise ValueError(
                f"gpus_per_replica = {self.gpus_per_replica} but node_pool.gpu is false: pods "
                "asking for GPUs on a CPU-only pool never schedule; set node_pool.gpu: true (with "
                "its node_selector/tolerations) or gpus_per_replica: 0"
            )
        return self


class GateSpec(_Section):
    """One gated metric: an absolute floor, and/or non-inferiority against the reference.

    Non-inferiority compares the candidate with the reference on the same items (paired) and
    passes only when the lower bound of the difference, at `confidence`, is above -margin.
    """

    metric: str = Field(description="task/metric, e.g. tiny_instructions_mc/acc")
    margin: Annotated[float, Field(ge=0)] | None = None
    floor: float | None = None
    confidence: float = 0.95

    @field_validator("confidence")
    @classmethod
    def _confidence(cls, value: float) -> float:
        if not 0.5 < value < 1:
            raise ValueError("must be between 0.5 and 1 (exclusive), e.g. 0.95")
        return value

    @model_validator(mode="after")
    def _a_criterion(self) -> GateSpec:
        if self.margin is None and self.floor is None:
            raise ValueError(
                f"gate on {self.metric!r} has neither a margin nor a floor: give margin (e.g. "
                "0.05, non-inferiority against the reference) and/or floor (an absolute minimum)"
            )
        return self


class EvaluateSpec(_Section):
    """How the evaluate pipeline judges a candidate: suite, models, harness settings, gates."""

    suite: str = Field(default="tiny", description="a suite under evals/suites/")
    candidate: str = Field(description="weights to judge: s3://... or file:///...")
    reference: str | None = Field(
        default=None, description="weights in production, compared on the same items"
    )
    output: str = Field(description="URI prefix for results, samples and the report")
    batch_size: Annotated[int, Field(ge=1)] = 1
    seed: int = 1234
    limit: Annotated[int, Field(ge=0, description="items per task; 0: all")] = 0
    gates: Annotated[list[GateSpec], Field(min_length=1)]

    @field_validator("candidate", "reference", "output")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else _uri(value)

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, value: str) -> str:
        from evals.catalog import CatalogError, suite_tasks

        try:
            suite_tasks(value)
        except CatalogError as exc:  # names the suite and the known ones
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _gates_fit_the_suite(self) -> EvaluateSpec:
        from evals.catalog import suite_tasks

        known = {task.name: task.metrics for task in suite_tasks(self.suite)}
        for i, gate in enumerate(self.gates):
            task, _, metric = gate.metric.partition("/")
            if task not in known:
                raise ValueError(
                    f"gates[{i}].metric = {gate.metric!r}: suite {self.suite!r} has no task "
                    f"{task!r}; its tasks: {', '.join(sorted(known))} (write task/metric)"
                )
            if metric not in known[task]:
                raise ValueError(
                    f"gates[{i}].metric = {gate.metric!r}: task {task!r} produces "
                    f"{', '.join(sorted(known[task]))}, not {metric!r}"
                )
            if gate.margin is not None and self.reference is None:
                raise ValueError(
                    f"gates[{i}] has a margin but evaluate.reference is not set: "
                    "non-inferiority needs the model in production to compare with"
                )
        return self


class ReleaseSpec(_Section):
    """A whole release: the model and the cluster settings its pipelines run with."""

    namespace: str = Field(default="llmflow", description="namespace the workflows run in")
    image: str = Field(
        default="ghcr.io/llmflow/steps:0.1.0",
        description="image with llmflow installed, that every step runs in",
    )
    service_account: str = Field(default="llmflow-pipeline")
    storage: StorageSpec = StorageSpec()
    model: ModelSpec
    finetune: FinetuneSpec | None = None
    evaluate: EvaluateSpec | None = None

    @field_validator("namespace", "service_account")
    @classmethod
    def _k8s_names(cls, value: str) -> str:
        return _dns_label(value, "a namespace or service account name")


def load_spec(path: str | Path) -> ReleaseSpec:
    """Read and validate a release spec file.

    Raises:
        SpecError: one line per problem, each naming the file, the field, the value and the fix.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such release spec; see releases/ for examples") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, origin=str(path))


def parse_spec(data: Any, origin: str = "<spec>") -> ReleaseSpec:
    """Validate already-loaded spec data; see `load_spec`."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: a release spec is a mapping with at least a 'model' section")
    try:
        return ReleaseSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("\n".join(_describe(exc, data, origin))) from None


def _describe(exc: ValidationError, data: dict[str, Any], origin: str) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc)
        if error["type"] == "extra_forbidden":
            known = _known_fields(loc[:-1])
            guess = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean {guess[0]!r}?" if guess else f"known fields: {', '.join(known)}"
            lines.append(f"{origin}: {field}: unknown field; {hint}")
        elif error["type"] == "missing":
            lines.append(f"{origin}: {field}: required field is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            lines.append(f"{origin}: {field}{shown}: {message}")
    return lines


def _known_fields(loc: list[str]) -> list[str]:
    model: type[BaseModel] = ReleaseSpec
    for part in loc:
        if part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not found:
            return []
        model = found[0]
    return sorted(model.model_fields)

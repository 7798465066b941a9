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
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from serving.policy import CanaryPolicy
from steps.errors import SourceError
from steps.train_knobs import BatchSize, Epochs, LearningRate, LoraAlpha, LoraRank, Method, Replicas
from steps.weights.sources import check_fetchable
from workflows.exceptions import SpecError
from workflows.spec_base import Section, dns_label, duration_s, uri
from workflows.spec_images import ImagesSpec
from workflows.spec_release import RecordsSection
from workflows.spec_schedules import ScheduleSpec
from workflows.spec_shadow import ShadowSpec


class StorageSpec(Section):
    """Which Kubernetes Secrets give steps their S3 and Hugging Face Hub settings.

    The S3 Secret holds `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, and optionally
    `AWS_ENDPOINT_URL` (MinIO, Ceph, any S3-compatible store) and `AWS_REGION`. The Hub Secret
    holds `HF_TOKEN` and optionally `HF_ENDPOINT` (a mirror); both are optional, as public
    models need no token. Manifests name the Secrets; their values are read by the pods at run
    time and appear in no manifest or log.
    """

    credentials_secret: str = Field(
        default="llmflow-s3", description="Secret with the S3 credentials and endpoint"
    )
    hf_token_secret: str = Field(
        default="llmflow-hf",
        description="Secret with HF_TOKEN and optionally HF_ENDPOINT, for hf:// sources",
    )

    @field_validator("credentials_secret", "hf_token_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return dns_label(value, "a Secret name")


class FetchRetrySpec(Section):
    """How Argo retries a fetch that failed for a reason that can heal (the store was away).

    After such a failure the step starts again after `backoff`, then `backoff * factor`, and so
    on, no wait longer than `cap`; each attempt resumes from the chunks earlier ones finished.
    Failures that cannot heal (no such bucket or key, refused credentials, bytes that disagree
    with the store's checksum) are not retried (`steps/_retry.py`). The defaults wait 10 s,
    20 s, 40 s, 80 s, 2 m and 2 m: about six minutes of a store that is down (a MinIO rolling
    restart, a proxy failover) are ridden out. Each value is a workflow parameter
    (`fetch-retry-*`), so one run can be given longer from the Argo UI.
    """

    limit: Annotated[
        int, Field(ge=0, le=100, description="retries after the first attempt; 0: none")
    ] = 6
    backoff: str = Field(default="10s", description="wait before the first retry: 10s, 1m")
    factor: Annotated[
        int, Field(ge=1, le=10, description="each further wait is the previous one times this")
    ] = 2
    cap: str = Field(default="2m", description="the longest wait between two attempts")

    @field_validator("backoff", "cap", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # whole seconds, as Argo reads a bare number
        if isinstance(value, str) and duration_s(value) <= 0:
            raise ValueError("must be longer than 0, e.g. 10s: retrying at once hammers a store")
        return value

    @model_validator(mode="after")
    def _cap_above_backoff(self) -> FetchRetrySpec:
        if duration_s(self.cap) < duration_s(self.backoff):
            raise ValueError(
                f"cap = {self.cap!r} is shorter than backoff = {self.backoff!r}, so every wait "
                "would be the cap; raise cap or lower backoff"
            )
        return self


class CacheSpec(Section):
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
    retry: FetchRetrySpec = Field(
        default_factory=FetchRetrySpec,
        description="how a fetch that failed for a reason that can heal is retried",
    )

    @field_validator("host_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path, e.g. /models")
        return value

    @field_validator("claim_name")
    @classmethod
    def _claim(cls, value: str) -> str:
        return dns_label(value, "a PersistentVolumeClaim name")


class ModelSpec(Section):
    """The model a release is about: its name, where its weights come from, how they are cached."""

    name: str = Field(description="the model's name, used in cache paths and object names")
    source: str = Field(description="s3://bucket/prefix, hf://org/name@revision or file:///path")
    cache: CacheSpec = CacheSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value, "the model name")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        try:
            check_fetchable(value)
        except SourceError as exc:
            raise ValueError(str(exc)) from None
        return value


class LoraSpec(Section):
    """Low-rank adapters: trained instead of the full weights, merged into them on save."""

    rank: LoraRank = 8
    alpha: LoraAlpha = 16


class TolerationSpec(Section):
    """A toleration for tainted (e.g. GPU) nodes."""

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class NodePoolSpec(Section):
    """Where training pods run: whether those nodes have GPUs, and how to land on them."""

    gpu: bool = Field(default=False, description="the pool's nodes have GPUs")
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[TolerationSpec] = Field(default_factory=list)


class FinetuneSpec(Section):
    """How the finetune pipeline trains: data, method, scale, and the job that runs it."""

    dataset: str = Field(description="JSONL of prompt/response rows: s3://... or file:///...")
    output: str = Field(description="URI prefix for checkpoints, the final model, the summary")
    method: Method = "full"
    lora: LoraSpec = LoraSpec()
    epochs: Epochs = 3
    learning_rate: LearningRate = 1e-3
    batch_size: BatchSize = 8
    checkpoint_every: Annotated[int, Field(ge=0, description="steps; 0: only at the end")] = 10
    replicas: Replicas = 1
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
        return uri(value)

    @model_validator(mode="after")
    def _gpus_need_a_gpu_pool(self) -> FinetuneSpec:
        if self.gpus_per_replica > 0 and not self.node_pool.gpu:
            raise ValueError(
                f"gpus_per_replica = {self.gpus_per_replica} but node_pool.gpu is false: pods "
                "asking for GPUs on a CPU-only pool never schedule; set node_pool.gpu: true (with "
                "its node_selector/tolerations) or gpus_per_replica: 0"
            )
        return self


class GateSpec(Section):
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


class EvaluateSpec(Section):
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
        return None if value is None else uri(value)

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


class ProbeSpec(Section):
    """The canary probe: the same prompts sent to stable and canary, answers graded.

    The prompt set is `serving/probes/<prompts>.jsonl` (prompt_id, prompt, reference): prompts
    spread over lengths, each with the answer a good model gives, so answer quality is
    compared as well as latency.
    """

    prompts: str = Field(default="tiny", description="a probe set under serving/probes/")
    requests: Annotated[int, Field(ge=1, description="requests per arm per batch")] = 60
    concurrency: Annotated[int, Field(ge=1, le=256, description="requests in flight per arm")] = 4
    max_tokens: Annotated[int, Field(ge=1, le=4096, description="tokens generated per answer")] = 16
    timeout_seconds: Annotated[float, Field(gt=0, description="per request")] = 60.0

    @field_validator("prompts")
    @classmethod
    def _known_prompts(cls, value: str) -> str:
        from serving.probe_sets import ProbeSetError, probe_set_path

        try:
            probe_set_path(value)
        except ProbeSetError as exc:  # names the set and the known ones
            raise ValueError(str(exc)) from None
        return value


class CanarySpec(Section):
    """How a new version replaces the stable one: traffic stages, each judged before the next.

    At each stage the HTTPRoute sends `stage`% of live traffic to the canary, the probe sends
    the same prompts to both versions, Prometheus is read, and the judge decides. INCONCLUSIVE
    probes `extensions` more batches; still INCONCLUSIVE, or FAIL, rolls back.
    """

    stages: Annotated[list[int], Field(min_length=1)] = Field(
        default_factory=lambda: [10, 50, 100],
        description="canary traffic weights in percent, increasing, ending at 100",
    )
    extensions: Annotated[int, Field(ge=0, le=5, description="extra batches when INCONCLUSIVE")] = 1
    policy: CanaryPolicy = Field(
        default_factory=CanaryPolicy, description="the judge's tolerances (serving/policy.py)"
    )

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[int]) -> list[int]:
        for weight in value:
            if not 0 < weight <= 100:
                raise ValueError(f"stage {weight} is not a percentage in 1..100")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(
                f"stages {value} must increase strictly (e.g. [10, 50, 100]): each stage sends "
                "more traffic to the canary than the one before"
            )
        if value[-1] != 100:
            raise ValueError(
                f"stages {value} must end at 100: promotion follows a stage with all "
                "traffic on the canary"
            )
        return value


class AutoscaleSpec(Section):
    """A HorizontalPodAutoscaler on vLLM's queue length, through the Prometheus adapter."""

    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 4
    waiting_per_replica: Annotated[
        float, Field(gt=0, description="target of vllm:num_requests_waiting per pod")
    ] = 5.0

    @model_validator(mode="after")
    def _bounds(self) -> AutoscaleSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas {self.max_replicas} < min_replicas {self.min_replicas}: "
                "raise max_replicas or lower min_replicas"
            )
        return self


class GatewaySpec(Section):
    """The Gateway API Gateway the model's HTTPRoute attaches to."""

    name: str = Field(default="llmflow-gateway", description="the Gateway's name")
    namespace: str | None = Field(default=None, description="the Gateway's namespace")
    hostnames: list[str] = Field(default_factory=list, description="hostnames the route serves")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value, "a Gateway name")


class ServingSpec(Section):
    """How the model is served with vLLM, and how a new version is rolled out."""

    model: str = Field(description="weights to deploy: s3://... or file:///...")
    served_name: str | None = Field(
        default=None, description="model name clients ask for; default: model.name"
    )
    image: str = Field(default="vllm/vllm-openai:v0.32.0", description="the vLLM server image")
    replicas: Annotated[int, Field(ge=1)] = 1
    gpus: Annotated[int, Field(ge=0, description="GPUs per pod; tensor parallel size")] = 0
    cpu: str = Field(default="2", description="CPU request per pod")
    memory: str = Field(default="8Gi", description="memory request and limit per pod")
    node_pool: NodePoolSpec = NodePoolSpec()
    vllm_args: list[str] = Field(
        default_factory=list, description="extra vLLM server arguments, e.g. --max-model-len"
    )
    port: Annotated[int, Field(ge=1024, le=65535)] = 8000
    startup_seconds: Annotated[
        int,
        Field(
            ge=30,
            description="how long the model may take to load before the pod is "
            "restarted (startupProbe)",
        ),
    ] = 1800
    gateway: GatewaySpec = GatewaySpec()
    prometheus_url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus the canary analysis queries",
    )
    scrape_interval: str = Field(default="15s", description="ServiceMonitor scrape interval")
    probe: ProbeSpec = ProbeSpec()
    shadow: ShadowSpec | None = Field(
        default=None,
        description="mirror live traffic to the candidate and judge it before the canary; "
        "absent: no shadow stage",
    )
    canary: CanarySpec = CanarySpec()
    autoscale: AutoscaleSpec | None = None

    @field_validator("model")
    @classmethod
    def _uri(cls, value: str) -> str:
        return uri(value)

    @field_validator("served_name")
    @classmethod
    def _served(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$", value):
            raise ValueError("letters, digits and . _ / - only, e.g. tiny-llama")
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                "must be an http(s) URL, e.g. http://prometheus-operated.monitoring.svc:9090"
            )
        return value.rstrip("/")

    @field_validator("scrape_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not re.match(r"^([0-9]+(ms|s|m|h))+$", value):
            raise ValueError("must be a Prometheus duration, e.g. 15s or 1m")
        return value

    @model_validator(mode="after")
    def _gpus_need_a_gpu_pool(self) -> ServingSpec:
        if self.gpus > 0 and not self.node_pool.gpu:
            raise ValueError(
                f"gpus = {self.gpus} but node_pool.gpu is false: set node_pool.gpu: true (with "
                "its node_selector/tolerations) or gpus: 0"
            )
        if self.autoscale and not (
            self.autoscale.min_replicas <= self.replicas <= self.autoscale.max_replicas
        ):
            raise ValueError(
                f"replicas = {self.replicas} lies outside autoscale's "
                f"{self.autoscale.min_replicas}..{self.autoscale.max_replicas}"
            )
        return self


class ReleaseSpec(Section):
    """A whole release: the model and the cluster settings its pipelines run with."""

    namespace: str = Field(default="llmflow", description="namespace the workflows run in")
    image: str = Field(
        default="ghcr.io/llmflow/steps:0.1.0",
        description="image with llmflow installed, that every step runs in",
    )
    service_account: str = Field(
        default="llmflow",
        description="prefix of the service accounts: each pipeline runs as "
        "`<service_account>-<pipeline>` (llmflow-deploy), vLLM pods as "
        "`<service_account>-serving`, training pods as `<service_account>-training`; "
        "`llmflow cluster render` creates them",
    )
    storage: StorageSpec = StorageSpec()
    model: ModelSpec
    finetune: FinetuneSpec | None = None
    evaluate: EvaluateSpec | None = None
    serving: ServingSpec | None = None
    images: ImagesSpec | None = None
    records: RecordsSection = RecordsSection()  # where release records and aliases are kept
    schedules: list[ScheduleSpec] = Field(
        default_factory=list, description="pipelines started on a cron schedule (CronWorkflows)"
    )

    @field_validator("namespace", "service_account")
    @classmethod
    def _k8s_names(cls, value: str) -> str:
        return dns_label(value, "a namespace or service account name")

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, value: list[ScheduleSpec]) -> list[ScheduleSpec]:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"schedule names must differ; {', '.join(twice)} is used twice")
        return value


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

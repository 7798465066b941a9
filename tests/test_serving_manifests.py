"""The vLLM serving manifests: strictly valid against upstream schemas, and shaped as intended."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serving import deployment, labels, monitoring, routing
from workflows.local.expressions import evaluate_condition
from workflows.spec import ReleaseSpec, load_spec, parse_spec
from workflows.validation import SchemaRegistry
from workflows.validation.validate import validate_documents

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "releases" / "tiny.yaml"
VERSION = "{{inputs.parameters.version}}"
MODEL_PATH = "{{inputs.parameters.model-path}}"
K8S_VERSION = "1.33"


def _tiny_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(TINY.read_text())
    return data


def _spec(**serving: Any) -> ReleaseSpec:
    data = _tiny_data()
    data["serving"].update(copy.deepcopy(serving))
    return parse_spec(data, origin="test")


@pytest.fixture(scope="module")
def tiny() -> ReleaseSpec:
    return load_spec(TINY)


@pytest.fixture(scope="module")
def gpu() -> ReleaseSpec:
    return _spec(
        gpus=2,
        replicas=3,
        node_pool={
            "gpu": True,
            "gpu_resource": "nvidia.com/gpu",
            "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "pool", "operator": "Equal", "value": "llm", "effect": "NoExecute"},
            ],
        },
        autoscale={"min_replicas": 2, "max_replicas": 6, "waiting_per_replica": 2.5},
        gateway={"name": "public", "namespace": "gateways", "hostnames": ["llm.example.com"]},
    )


def _every_manifest(spec: ReleaseSpec) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for track in labels.TRACKS:
        objects.append(deployment.build_deployment(spec, track, VERSION, MODEL_PATH))
        objects.append(deployment.build_deployment(spec, track, "v2", "/models/tiny-llama/v2"))
        objects.append(routing.build_service(spec, track))
        objects.append(monitoring.build_pdb(spec, track))
        hpa = monitoring.build_hpa(spec, track)
        if hpa is not None:
            objects.append(hpa)
    objects.append(routing.build_httproute(spec, {"stable": 90, "canary": 10}))
    objects.append(routing.build_httproute(spec, {"stable": 100}))
    objects.append(monitoring.build_servicemonitor(spec))
    return objects


# --- strict validation ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["tiny", "gpu"])
def test_every_manifest_validates_strictly(
    which: str, registry: SchemaRegistry, request: pytest.FixtureRequest
) -> None:
    spec: ReleaseSpec = request.getfixturevalue(which)
    objects = _every_manifest(spec)
    kinds = {obj["kind"] for obj in objects}
    expected = {"Deployment", "Service", "PodDisruptionBudget", "HTTPRoute", "ServiceMonitor"}
    assert expected <= kinds
    assert ("HorizontalPodAutoscaler" in kinds) == (which == "gpu")
    problems = validate_documents([(which, obj) for obj in objects], registry)
    assert [str(p) for p in problems] == []


@pytest.mark.parametrize("which", ["tiny", "gpu"])
def test_builtin_kinds_pass_kubernetes_validate_strict(
    which: str, request: pytest.FixtureRequest
) -> None:
    spec: ReleaseSpec = request.getfixturevalue(which)
    builtin = [o for o in _every_manifest(spec) if "." not in o["apiVersion"].split("/")[0]]
    assert {o["kind"] for o in builtin} >= {"Deployment", "Service", "PodDisruptionBudget"}
    for obj in builtin:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_crd_kinds_are_checked_against_upstream_schemas(registry: SchemaRegistry) -> None:
    assert registry.validator(routing.HTTPROUTE_API_VERSION, "HTTPRoute") is not None
    assert registry.validator(monitoring.SERVICEMONITOR_API_VERSION, "ServiceMonitor") is not None


def test_validation_catches_a_wrong_field(tiny: ReleaseSpec, registry: SchemaRegistry) -> None:
    route = routing.build_httproute(tiny, {"stable": 100})
    route["spec"]["rules"][0]["backendRef"] = route["spec"]["rules"][0].pop("backendRefs")
    monitor = monitoring.build_servicemonitor(tiny)
    monitor["spec"]["endpoints"][0]["intervall"] = monitor["spec"]["endpoints"][0].pop("interval")
    dep = deployment.build_deployment(tiny, "stable", VERSION, MODEL_PATH)
    dep["spec"]["template"]["spec"]["containers"][0]["startupProbes"] = {}

    problems = [str(p) for p in validate_documents([("bad", route)], registry)]
    assert any("backendRef: unknown field" in p and "'backendRefs'" in p for p in problems)
    problems = [str(p) for p in validate_documents([("bad", monitor)], registry)]
    assert any("intervall: unknown field" in p for p in problems), problems
    problems = [str(p) for p in validate_documents([("bad", dep)], registry)]
    assert problems, "a misspelt Deployment field passed"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_validation_catches_a_wrong_type(tiny: ReleaseSpec, registry: SchemaRegistry) -> None:
    route = routing.build_httproute(tiny, {"stable": 100})
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = "ninety"
    assert validate_documents([("bad", route)], registry)


# --- behaviour --------------------------------------------------------------------------------


def _pod(dep: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(dep)["containers"]
    assert container["name"] == "vllm"
    return dict(container)


def test_gpu_spec_asks_for_gpus_and_lands_on_the_gpu_pool(gpu: ReleaseSpec) -> None:
    dep = deployment.build_deployment(gpu, "canary", "v2", "/models/tiny-llama/v2")
    container, pod = _container(dep), _pod(dep)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert (
        container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
    )
    assert "cpu" not in container["resources"]["limits"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "pool", "operator": "Equal", "value": "llm", "effect": "NoExecute"},
    ]
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert dep["spec"]["replicas"] == 3


def test_cpu_spec_has_no_gpu_and_no_node_pool(tiny: ReleaseSpec) -> None:
    dep = deployment.build_deployment(tiny, "stable", VERSION, MODEL_PATH)
    container, pod = _container(dep), _pod(dep)
    assert set(container["resources"]["limits"]) == {"memory"}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "1"
    assert args[-len(tiny.serving.vllm_args) :] == tiny.serving.vllm_args  # type: ignore[union-attr]


def test_server_arguments_env_and_mounts(tiny: ReleaseSpec) -> None:
    container = _container(deployment.build_deployment(tiny, "stable", "v1", "/models/m/v1"))
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert container["args"][:10] == [
        "--model", "/models/m/v1",
        "--served-model-name", "tiny-llama",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tensor-parallel-size", "1",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}.items() <= (
        env.items()
    )
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"] == {"mountPath": "/models", "name": "model-cache", "readOnly": True}
    assert container["ports"] == [{"containerPort": 8000, "name": "http", "protocol": "TCP"}]


def test_cache_and_shm_volumes(tiny: ReleaseSpec) -> None:
    volumes = {
        v["name"]: v
        for v in _pod(deployment.build_deployment(tiny, "stable", "v", "/m"))["volumes"]
    }
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "llmflow-model-cache"}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["dshm"]["emptyDir"]["sizeLimit"]


def test_pod_is_non_root_and_unprivileged(tiny: ReleaseSpec) -> None:
    dep = deployment.build_deployment(tiny, "stable", "v1", "/m")
    ctx = _container(dep)["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0 and ctx["runAsGroup"] > 0
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # its own account, bound to no Role (cluster/base), not a pipeline's
    assert _pod(dep)["serviceAccountName"] == f"{tiny.service_account}-serving"


@pytest.mark.parametrize("startup", [30, 95, 600, 1800, 3601])
def test_startup_probe_covers_the_startup_budget(startup: int) -> None:
    spec = _spec(startup_seconds=startup)
    dep = deployment.build_deployment(spec, "stable", "v1", "/m")
    probe = _container(dep)["startupProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": "http"}
    assert probe["periodSeconds"] * probe["failureThreshold"] >= startup
    assert probe["periodSeconds"] * (probe["failureThreshold"] - 1) < startup
    assert dep["spec"]["progressDeadlineSeconds"] > startup
    for name in ("readinessProbe", "livenessProbe"):
        assert _container(dep)[name]["httpGet"]["path"] == "/health"


def test_rollout_surges_before_removing_a_pod(tiny: ReleaseSpec) -> None:
    dep = deployment.build_deployment(tiny, "stable", "v1", "/m")
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert _pod(dep)["terminationGracePeriodSeconds"] >= 60


@pytest.mark.parametrize("track", labels.TRACKS)
def test_selectors_never_include_the_version(gpu: ReleaseSpec, track: str) -> None:
    dep = deployment.build_deployment(gpu, track, "v7", "/m")
    service = routing.build_service(gpu, track)
    pdb = monitoring.build_pdb(gpu, track)
    expected = {"app.kubernetes.io/name": "tiny-llama", "track": track}
    for found in (
        dep["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        labels.selector(gpu, track),
    ):
        assert found == expected
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {
        **expected,
        "version": "v7",
        "app.kubernetes.io/part-of": "llmflow",
        "llmflow.io/model": "tiny-llama",
    }
    assert dep["metadata"]["labels"]["version"] == "v7"
    assert dep["metadata"]["name"] == service["metadata"]["name"] == f"tiny-llama-{track}"


def test_promotion_changes_only_version_labels_and_model(tiny: ReleaseSpec) -> None:
    old = deployment.build_deployment(tiny, "stable", "v1", "/models/tiny-llama/v1")
    new = deployment.build_deployment(tiny, "stable", "v2", "/models/tiny-llama/v2")
    assert old["spec"]["selector"] == new["spec"]["selector"]


def test_argo_expressions_pass_through_as_strings(tiny: ReleaseSpec) -> None:
    dep = deployment.build_deployment(tiny, "canary", VERSION, MODEL_PATH)
    assert dep["metadata"]["labels"]["version"] == VERSION
    assert dep["spec"]["template"]["metadata"]["labels"]["version"] == VERSION
    args = _container(dep)["args"]
    assert args[args.index("--model") + 1] == MODEL_PATH
    rendered = yaml.safe_dump(dep)
    assert yaml.safe_load(rendered) == dep  # survives YAML as a resource template manifest


def test_served_name_defaults_to_the_model_name() -> None:
    data = _tiny_data()
    del data["serving"]["served_name"]
    spec = parse_spec(data)
    assert labels.served_name(spec) == "tiny-llama"
    assert labels.served_name(_spec(served_name="org/chat-v1")) == "org/chat-v1"
    assert labels.route_name(spec) == "tiny-llama"


def test_unknown_track_is_refused(tiny: ReleaseSpec) -> None:
    with pytest.raises(ValueError, match="unknown track 'blue'"):
        deployment.build_deployment(tiny, "blue", "v1", "/m")
    with pytest.raises(ValueError, match="unknown track 'green'"):
        routing.build_httproute(tiny, {"stable": 50, "green": 50})


def test_factories_need_a_serving_section() -> None:
    data = _tiny_data()
    del data["serving"]
    spec = parse_spec(data)
    with pytest.raises(ValueError, match="no serving section"):
        deployment.build_deployment(spec, "stable", "v1", "/m")
    with pytest.raises(ValueError, match="no serving section"):
        monitoring.build_servicemonitor(spec)


# --- routing ----------------------------------------------------------------------------------


def test_weights_become_backend_refs_stable_first(tiny: ReleaseSpec) -> None:
    route = routing.build_httproute(tiny, {"canary": 10, "stable": 90})
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": "tiny-llama-stable", "port": 8000, "weight": 90},
        {"name": "tiny-llama-canary", "port": 8000, "weight": 10},
    ]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert route["metadata"]["name"] == "tiny-llama"
    assert route["spec"]["parentRefs"] == [{"name": "llmflow-gateway"}]
    assert "hostnames" not in route["spec"]


def test_zero_weight_keeps_the_backend(tiny: ReleaseSpec) -> None:
    route = routing.build_httproute(tiny, {"stable": 100, "canary": 0})
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [
        ("tiny-llama-stable", 100),
        ("tiny-llama-canary", 0),
    ]


def test_gateway_namespace_and_hostnames(gpu: ReleaseSpec) -> None:
    route = routing.build_httproute(gpu, {"stable": 50, "canary": 50})
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["llm.example.com"]


def test_streaming_timeouts(tiny: ReleaseSpec) -> None:
    timeouts = routing.build_httproute(tiny, {"stable": 100})["spec"]["rules"][0]["timeouts"]
    assert timeouts == {"request": "10m", "backendRequest": "10m"}


@pytest.mark.parametrize("weights", [{}, {"stable": -1}, {"canary": 1_000_001}])
def test_bad_weights_are_refused(tiny: ReleaseSpec, weights: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        routing.build_httproute(tiny, weights)


def test_service_targets_the_named_port(tiny: ReleaseSpec) -> None:
    service = routing.build_service(tiny, "canary")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "tiny-llama"


# --- monitoring -------------------------------------------------------------------------------


def test_servicemonitor_selects_both_tracks_and_keeps_version_and_track(
    tiny: ReleaseSpec,
) -> None:
    monitor = monitoring.build_servicemonitor(tiny)
    assert monitor["metadata"]["name"] == "tiny-llama-vllm"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "tiny-llama"}
    for track in labels.TRACKS:
        service_labels = routing.build_service(tiny, track)["metadata"]["labels"]
        assert selector.items() <= service_labels.items()
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "2s"}]
    assert monitor["spec"]["podTargetLabels"] == ["version", "track"]


@pytest.mark.parametrize("replicas", [1, 2, 5])
def test_pdb_never_blocks_a_drain(replicas: int) -> None:
    pdb = monitoring.build_pdb(_spec(replicas=replicas), "stable")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_hpa_absent_without_autoscale(tiny: ReleaseSpec) -> None:
    assert tiny.serving is not None and tiny.serving.autoscale is None
    assert monitoring.build_hpa(tiny, "stable") is None


def test_hpa_scales_the_track_on_queue_length(gpu: ReleaseSpec) -> None:
    hpa = monitoring.build_hpa(gpu, "canary")
    assert hpa is not None
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tiny-llama-canary",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    assert spec["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "vllm_num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "2500m"},
            },
        }
    ]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    whole = monitoring.build_hpa(_spec(autoscale={"waiting_per_replica": 5}), "stable")
    assert whole is not None
    assert whole["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "5"


# --- Argo conditions --------------------------------------------------------------------------

#: What Argo's label-selector parser accepts as a key (a qualified name) and a value.
_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def _requirements(condition: str) -> list[tuple[str, str]]:
    out = []
    for term in condition.split(","):
        key, op, value = term.strip().partition(" == ")
        assert op, f"not an equality requirement: {term!r}"
        assert _KEY.match(key), f"{key!r} is not a label-selector key Argo can parse"
        assert _VALUE.match(value), f"{value!r} is not a label-selector value Argo can parse"
        out.append((key, value))
    return out


def _status(**fields: Any) -> dict[str, Any]:
    return {"status": fields}


def test_ready_condition_holds_only_when_the_rollout_is_done(gpu: ReleaseSpec) -> None:
    condition = deployment.ready_condition(gpu)
    assert len(_requirements(condition)) == 4
    done = _status(replicas=3, updatedReplicas=3, readyReplicas=3, availableReplicas=3)
    assert evaluate_condition(condition, done)
    for partial in (
        _status(replicas=4, updatedReplicas=3, readyReplicas=4, availableReplicas=4),  # old pod
        _status(replicas=3, updatedReplicas=2, readyReplicas=3, availableReplicas=3),
        _status(replicas=3, updatedReplicas=3, readyReplicas=2, availableReplicas=2),
        _status(replicas=3, updatedReplicas=3),  # none ready: the fields are absent
    ):
        assert not evaluate_condition(condition, partial)


@pytest.mark.parametrize(
    "conditions",
    [
        ["Available", "ProgressDeadlineExceeded"],
        ["ProgressDeadlineExceeded", "Available"],
        ["Available", "ReplicaFailure", "ProgressDeadlineExceeded"],
    ],
)
def test_failed_condition_matches_a_timed_out_rollout(conditions: list[str]) -> None:
    status = _status(conditions=[{"type": "X", "status": "False", "reason": r} for r in conditions])
    # Argo fails the step as soon as any one failure requirement matches.
    terms = [f"{k} == {v}" for k, v in _requirements(deployment.FAILED_CONDITION)]
    assert any(evaluate_condition(term, status) for term in terms)


def test_failed_condition_ignores_a_progressing_rollout() -> None:
    status = _status(
        conditions=[
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
        ]
    )
    terms = [f"{k} == {v}" for k, v in _requirements(deployment.FAILED_CONDITION)]
    assert not any(evaluate_condition(term, status) for term in terms)

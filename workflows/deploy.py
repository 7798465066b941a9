"""The deploy pipeline: serve new weights with vLLM, as a judged canary beside the stable version.

    fetch-weights -> find-stable -> plan-rollout
      first release:  deploy-first -> route-first
      otherwise:      deploy-canary -> [start-shadow -> analyse-shadow]
                      -> for each stage: set-weights-N -> analyse-N
                      -> promote (stable moved to the new version, ready) -> route-promoted
                      -> retire-canary;  any failure -> rollback -> remove-canary

With `serving.shadow`, the candidate is first shadowed: the route keeps all traffic on stable
and mirrors a fraction of it to the candidate, whose answers are measured and discarded; a
shadow that does not pass rolls back before any user was served by the candidate.

Every cluster change is an Argo resource template (apply, get, delete) with success and failure
conditions, and every decision is a task's phase, so the Argo UI shows each stage. Argo's DAG
rules make the workflow's phase the answer: a failed analysis omits the promotion below it,
which inherits the failure, while the rollback hanging on that failure restores stable; so the
workflow Succeeds exactly when the new version serves. An exit handler restores stable when
the workflow fails or is stopped midway, and a mutex per model keeps two rollouts of one model
from interleaving.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hera.workflows import DAG, Parameter, Resource, Workflow
from hera.workflows.models import Mutex, Synchronization, ValueFrom

from serving import deployment, labels, monitoring, routing
from steps.canary import analyse_canary
from steps.deploy import plan_rollout
from steps.shadow import analyse_shadow
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
from workflows.spec_base import duration_s

NAME = "deploy"

#: The task whose phase says whether a stable version exists.
FIND_STABLE = "find-stable"

#: The plan's mode, as a `when` compares it.
MODE = "{{tasks.plan-rollout.outputs.parameters.mode}}"

#: The new version's label.
VERSION = "{{tasks.plan-rollout.outputs.parameters.version}}"


def deploy_parameters(spec: ReleaseSpec) -> list[Parameter]:
    """Workflow parameters: what is deployed, and how the canary is probed and judged."""
    assert spec.serving is not None
    sv = spec.serving
    probe = sv.probe
    return [
        Parameter(name="candidate", value=sv.model, description="weights to deploy (URI)"),
        Parameter(
            name="served-name",
            value=labels.served_name(spec),
            description="model name clients ask for",
        ),
        Parameter(
            name="prometheus-url",
            value=sv.prometheus_url,
            description="Prometheus the analysis reads; empty: judge by the probe alone",
        ),
        Parameter(name="probe-prompts", value=probe.prompts, description="probe set name"),
        Parameter(
            name="probe-requests",
            value=str(probe.requests),
            description="requests per version per batch",
        ),
        Parameter(
            name="probe-concurrency",
            value=str(probe.concurrency),
            description="in flight per version",
        ),
        Parameter(
            name="probe-max-tokens", value=str(probe.max_tokens), description="tokens per answer"
        ),
        Parameter(
            name="probe-timeout",
            value=f"{probe.timeout_seconds:g}",
            description="seconds one probe request may take",
        ),
        Parameter(
            name="extensions",
            value=str(sv.canary.extensions),
            description="extra probe batches when a stage is INCONCLUSIVE, before rolling back",
        ),
        Parameter(
            name="policy",
            value=json.dumps(sv.canary.policy.model_dump(mode="json")),
            description="JSON canary policy: tolerances, confidence, min_samples",
        ),
    ]


def _manifest(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def _deployment_template(spec: ReleaseSpec, name: str, track: str) -> Resource:
    """Apply a track's Deployment and wait until every replica of the new version is ready."""
    manifest = deployment.build_deployment(
        spec,
        track,
        version="{{inputs.parameters.version}}",
        model_path="{{inputs.parameters.model-path}}",
    )
    return Resource(
        name=name,
        action="apply",
        manifest=_manifest(manifest),
        success_condition=deployment.ready_condition(spec),
        failure_condition=deployment.FAILED_CONDITION,
        inputs=[
            Parameter(name="version", description="version label of the weights"),
            Parameter(name="model-path", description="the weights in the model cache"),
        ],
    )


def _apply(name: str, obj: dict[str, Any]) -> Resource:
    return Resource(name=name, action="apply", manifest=_manifest(obj))


def _delete(name: str, obj: dict[str, Any]) -> Resource:
    """Delete the object (by kind and name; a missing one is no error, as Argo deletes)."""
    meta = obj["metadata"]
    stub = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }
    return Resource(name=name, action="delete", manifest=_manifest(stub))


def build(spec: ReleaseSpec) -> Workflow:
    """The deploy Workflow for a release spec with a `serving` section."""
    if spec.serving is None:
        raise SpecError(
            "the deploy pipeline needs a 'serving' section in the release spec (model, "
            "vllm_args, probe, canary, ...); see releases/tiny.yaml"
        )
    sv = spec.serving
    stable_name = labels.object_name(spec, labels.STABLE)
    parameters = [p for p in model_parameters(spec) if p.name != "source"] + deploy_parameters(spec)
    with new_workflow(spec, NAME, parameters) as workflow:
        workflow.on_exit = "restore-stable"
        deploy_stable = _deployment_template(spec, "deploy-stable", labels.STABLE)
        deploy_canary = _deployment_template(spec, "deploy-canary", labels.CANARY)
        canary_deployment = deployment.build_deployment(spec, labels.CANARY, "none", "none")
        canary_service = routing.build_service(spec, labels.CANARY)
        find_stable = Resource(
            name=FIND_STABLE,
            action="get",
            manifest=_manifest(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": stable_name, "namespace": spec.namespace},
                }
            ),
            outputs=[
                Parameter(
                    name="version",
                    value_from=ValueFrom(json_path="{.metadata.labels.version}"),
                )
            ],
        )
        route_stable = _apply("route-stable", routing.build_httproute(spec, {labels.STABLE: 100}))
        apply_canary_service = _apply("apply-service-canary", canary_service)
        remove_canary = _delete("remove-canary", canary_deployment)
        remove_canary_service = _delete("remove-canary-service", canary_service)
        platform = [
            _apply("apply-service-stable", routing.build_service(spec, labels.STABLE)),
            _apply("apply-servicemonitor", monitoring.build_servicemonitor(spec)),
            _apply("apply-pdb", monitoring.build_pdb(spec, labels.STABLE)),
        ]
        hpa = monitoring.build_hpa(spec, labels.STABLE)
        if hpa is not None:
            platform.append(_apply("apply-hpa", hpa))
        if sv.shadow is not None:
            shadow_route = _apply(
                "start-shadow",
                routing.build_httproute(
                    spec,
                    {labels.STABLE: 100},
                    mirror=routing.Mirror(labels.CANARY, sv.shadow.fraction),
                ),
            )
        weights = {
            stage: _apply(
                f"set-weights-{stage}",
                routing.build_httproute(spec, {labels.STABLE: 100 - stage, labels.CANARY: stage}),
            )
            for stage in sv.canary.stages
        }

        mutex = Synchronization(mutexes=[Mutex(name=f"deploy-{spec.model.name}")])
        # The exit handler takes the mutex again: it runs after `main` let it go, and must
        # not act while the next deploy of the model has taken it.
        with DAG(name="restore-stable", synchronization=mutex):
            # On any end but success: all traffic on stable, the canary gone.
            when = "{{workflow.status}} != Succeeded"
            route_stable(name="restore-route", when=when)
            # Traffic first, then the canary: no request is sent to a server being stopped.
            remove_canary(name="restore-remove-canary", when=when, depends="restore-route")
            remove_canary_service(
                name="restore-remove-canary-service", when=when, depends="restore-route"
            )

        plan_outputs = {
            name: f"{{{{tasks.plan-rollout.outputs.parameters.{name}}}}}"
            for name in ("mode", "version")
        }
        plan_outputs["digest"] = "{{tasks.fetch-weights.outputs.parameters.digest}}"
        # The candidate is `main`'s input: a release passes the checkpoint it just trained.
        # The mutex is on `main`, not the workflow, so a release that runs `main` holds it too.
        with DAG(
            name="main",
            inputs=[Parameter(name="candidate")],
            outputs=main_outputs(plan_outputs),
            synchronization=mutex,
        ):
            fetched = fetch_model(workflow, source_value=main_input("candidate"))
            find_stable()
            planned = plan_rollout(
                arguments={
                    "digest": fetched.get_parameter("digest"),
                    "config": _server_config(spec),
                    "model-name": param(workflow, "model-name"),
                    "stable-status": f"{{{{tasks.{FIND_STABLE}.status}}}}",
                    # A failed lookup has no outputs: read them nil-safely.
                    "stable-version": (
                        f"{{{{=tasks['{FIND_STABLE}']?.outputs?.parameters?.version ?? ''}}}}"
                    ),
                },
                # A missing stable Deployment fails the lookup: that is the first release.
                depends=f"fetch-weights && ({FIND_STABLE}.Succeeded || {FIND_STABLE}.Failed)",
            )
            for template in platform:
                applied = template(when=f"{MODE} != current")
                planned >> applied  # type: ignore[operator]
            weights_args = {
                "version": VERSION,
                "model-path": "{{tasks.plan-rollout.outputs.parameters.model-path}}",
            }

            # The model's first release: straight to stable.
            first = deploy_stable(
                name="deploy-first", arguments=weights_args, when=f"{MODE} == first"
            )
            planned >> first  # type: ignore[operator]
            route_stable(name="route-first", depends="deploy-first.Succeeded")

            # Later releases: a canary beside stable, judged stage by stage.
            deploy_canary(arguments=weights_args, when=f"{MODE} == canary", depends="plan-rollout")
            apply_canary_service(when=f"{MODE} == canary", depends="plan-rollout")
            previous = "deploy-canary.Succeeded && apply-service-canary.Succeeded"
            # A task that failed or errored (pod evicted, executor error) before promotion.
            failures = ["deploy-canary.Failed", "deploy-canary.Errored"]
            if sv.shadow is not None:
                # Users stay on stable; the candidate answers mirrored copies, judged first.
                shadow_route(depends=previous)
                analyse_shadow(
                    name="analyse-shadow",
                    depends="start-shadow.Succeeded",
                    arguments=_shadow_arguments(spec, workflow),
                )
                previous = "analyse-shadow.Succeeded"
                failures.extend(
                    f"{task}.{phase}"
                    for task in ("start-shadow", "analyse-shadow")
                    for phase in ("Failed", "Errored")
                )
            for index, stage in enumerate(sv.canary.stages):
                weights[stage](name=f"stage-{stage}", depends=previous)
                analyse_canary(
                    name=f"analyse-{stage}",
                    depends=f"stage-{stage}.Succeeded",
                    arguments={
                        "stage": str(stage),
                        "stable-url": _service_url(spec, labels.STABLE),
                        "canary-url": _service_url(spec, labels.CANARY),
                        "served-name": param(workflow, "served-name"),
                        "stable-version": "{{tasks.find-stable.outputs.parameters.version}}",
                        "canary-version": VERSION,
                        "prometheus-url": param(workflow, "prometheus-url"),
                        **_probe_arguments(workflow),
                        "offset": str(index * sv.probe.requests * (1 + sv.canary.extensions)),
                        "scrape-interval": str(duration_s(sv.scrape_interval)),
                    },
                )
                previous = f"analyse-{stage}.Succeeded"
                failures.extend(
                    f"{task}.{phase}"
                    for task in (f"stage-{stage}", f"analyse-{stage}")
                    for phase in ("Failed", "Errored")
                )

            # Every stage passed: stable becomes the new version, then the canary goes.
            deploy_stable(name="promote", arguments=weights_args, depends=previous)
            route_stable(name="route-promoted", depends="promote.Succeeded")
            remove_canary(name="retire-canary", depends="route-promoted.Succeeded")
            remove_canary_service(name="retire-canary-service", depends="route-promoted.Succeeded")

            # A canary that failed to start or to pass: stable takes all traffic back.
            route_stable(name="rollback", depends=" || ".join(failures))
            remove_canary(name="rollback-canary", depends="rollback.Succeeded")
            remove_canary_service(name="rollback-canary-service", depends="rollback.Succeeded")
    return workflow


def _probe_arguments(workflow: Workflow) -> dict[str, str]:
    """How an analysis probes and judges: the workflow's probe parameters and policy."""
    return {
        "prompts": param(workflow, "probe-prompts"),
        "requests": param(workflow, "probe-requests"),
        "concurrency": param(workflow, "probe-concurrency"),
        "max-tokens": param(workflow, "probe-max-tokens"),
        "timeout": param(workflow, "probe-timeout"),
        "extensions": param(workflow, "extensions"),
        "policy": param(workflow, "policy"),
    }


def _shadow_arguments(spec: ReleaseSpec, workflow: Workflow) -> dict[str, str]:
    """The analyse-shadow step's arguments: the two Services, the window, probe and policy."""
    assert spec.serving is not None and spec.serving.shadow is not None
    shadow = spec.serving.shadow
    return {
        "stable-url": _service_url(spec, labels.STABLE),
        "candidate-url": _service_url(spec, labels.CANARY),
        "served-name": param(workflow, "served-name"),
        "stable-version": "{{tasks.find-stable.outputs.parameters.version}}",
        "candidate-version": VERSION,
        "prometheus-url": param(workflow, "prometheus-url"),
        "fraction": f"{shadow.fraction:g}",
        "duration": f"{duration_s(shadow.duration):g}" if shadow.duration else "0",
        "shadow-requests": str(shadow.requests or 0),
        "window-timeout": f"{duration_s(shadow.timeout):g}",
        **_probe_arguments(workflow),
        "scrape-interval": str(duration_s(spec.serving.scrape_interval)),
    }


def _server_config(spec: ReleaseSpec) -> str:
    """What, besides the weights, makes a version: the server and how it runs (JSON)."""
    assert spec.serving is not None
    sv = spec.serving
    return json.dumps(
        {
            "image": sv.image,
            "vllm_args": sv.vllm_args,
            "gpus": sv.gpus,
            "served_name": labels.served_name(spec),
        },
        sort_keys=True,
    )


def _service_url(spec: ReleaseSpec, track: str) -> str:
    """A track's Service as the probe reaches it (cluster DNS; the local platform maps it)."""
    assert spec.serving is not None
    name = labels.object_name(spec, track)
    return f"http://{name}.{spec.namespace}.svc:{spec.serving.port}"


PIPELINE = Pipeline(
    NAME,
    "serve the weights with vLLM: a judged canary beside stable, promoted or rolled back",
    build,
)

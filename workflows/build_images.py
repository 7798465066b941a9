"""The build-images pipeline: the steps and serving images, rebuilt only when their inputs change.

    plan-images -> build-image (one per image the registry lacks) -> record-images

`plan-images` clones the release's source revision, computes each image's content tag (a
digest of its Dockerfile, build arguments with the base resolved to a digest, and the files
it copies) and asks the registry for it; an image already there is not built again. Each
missing image is built with buildah in its own pod: daemonless, chroot isolation and vfs
storage, so it needs no privileged container, no Docker socket and no overlay mounts.
`record-images` outputs every image as `registry/repo@sha256:...` for later pipelines.

The source arrives as a git artifact (Argo's executor clones it); registry credentials come
from a `kubernetes.io/dockerconfigjson` Secret mounted read-only, never from parameters.
"""

from __future__ import annotations

import json

from hera.workflows import DAG, Container, Parameter, Workflow
from hera.workflows import models as m

from steps.images import (
    AUTH_ENV,
    AUTH_MOUNTS,
    AUTH_VOLUME,
    plan_images,
    record_images,
    source_artifact,
)
from workflows._common import main_outputs, new_workflow, param
from workflows.exceptions import SpecError
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec

NAME = "build-images"
#: The images this pipeline builds, in the order they are listed.
IMAGES = ("steps", "serving")

#: Build one image and push it; buildah writes the pushed manifest's digest to a file.
BUILD_SCRIPT = """\
set -eu
[ -f "$REGISTRY_AUTH_FILE" ] || unset REGISTRY_AUTH_FILE
tls=true; [ "$INSECURE" = true ] && tls=false
cd /workspace/src
# shellcheck disable=SC2086  # build-args holds separate --build-arg=K=V words
buildah build --layers --tls-verify="$tls" $BUILD_ARGS -f "$DOCKERFILE" -t "$REF" .
buildah push --tls-verify="$tls" --digestfile /tmp/outputs/digest "$REF" "docker://$REF"
echo "pushed $REF@$(cat /tmp/outputs/digest)"
"""


def images_config(spec: ReleaseSpec) -> str:
    """The images as the plan step reads them: name to Dockerfile and base."""
    assert spec.images is not None
    config = {}
    for name in IMAGES:
        image = getattr(spec.images, name)
        config[name] = {"dockerfile": image.dockerfile, "base": image.base or ""}
    return json.dumps(config, sort_keys=True)


def build_parameters(spec: ReleaseSpec) -> list[Parameter]:
    """The pipeline's parameters, from the spec's `images` section."""
    assert spec.images is not None
    images = spec.images
    return [
        Parameter(name="image", value=spec.image, description="image the plan steps run in"),
        Parameter(name="repo", value=images.source.repo, description="git repository to build"),
        Parameter(
            name="revision",
            value=images.source.revision,
            description="branch, tag or commit to build",
        ),
        Parameter(name="registry", value=images.registry, description="where images are pushed"),
        Parameter(
            name="insecure",
            value=str(images.insecure).lower(),
            enum=["true", "false"],
            description="the registry speaks plain HTTP",
        ),
        Parameter(
            name="variant",
            value=images.variant,
            enum=["cpu", "cuda"],
            description="torch build of the steps image",
        ),
        Parameter(
            name="torch-index",
            value=images.torch_index,
            description="PyTorch wheel index mirror; empty: download.pytorch.org",
        ),
        Parameter(
            name="storage-driver",
            value=images.storage_driver,
            enum=["vfs", "overlay"],
            description="buildah storage: vfs (any pod) or overlay (faster, needs the kernel's)",
        ),
        Parameter(
            name="images-config",
            value=images_config(spec),
            description="JSON: image name to its Dockerfile and base",
        ),
    ]


def build(spec: ReleaseSpec) -> Workflow:
    """The build-images Workflow for a release spec with an `images` section."""
    if spec.images is None:
        raise SpecError(
            "the build-images pipeline needs an 'images' section in the release spec "
            "(registry, source); see releases/tiny.yaml"
        )
    with new_workflow(spec, NAME, build_parameters(spec)) as workflow:
        workflow.volumes = [
            m.Volume(
                name=AUTH_VOLUME,
                secret=m.SecretVolumeSource(
                    secret_name=spec.images.credentials_secret, optional=True
                ),
            )
        ]
        build_image = Container(
            name="build-image",
            image=spec.images.builder,
            command=["sh", "-c", BUILD_SCRIPT],
            inputs=[
                Parameter(name="name", description="the image's name"),
                Parameter(name="dockerfile", description="its Dockerfile in the source"),
                Parameter(name="ref", description="registry/repo:content-tag to push"),
                Parameter(name="build-args", description="--build-arg=K=V words"),
                source_artifact(),
            ],
            env=[
                *AUTH_ENV,
                m.EnvVar(name="DOCKERFILE", value="{{inputs.parameters.dockerfile}}"),
                m.EnvVar(name="REF", value="{{inputs.parameters.ref}}"),
                m.EnvVar(name="BUILD_ARGS", value="{{inputs.parameters.build-args}}"),
                m.EnvVar(name="INSECURE", value=param(workflow, "insecure")),
                # Daemonless and unprivileged: chroot isolation, vfs storage by default.
                m.EnvVar(name="BUILDAH_ISOLATION", value="chroot"),
                m.EnvVar(name="STORAGE_DRIVER", value=param(workflow, "storage-driver")),
            ],
            volume_mounts=AUTH_MOUNTS,
            outputs=[
                Parameter(
                    name="digest",
                    value_from=m.ValueFrom(path="/tmp/outputs/digest"),
                    description="the pushed manifest's digest",
                )
            ],
            security_context=m.SecurityContext(
                run_as_user=0,
                allow_privilege_escalation=False,
                capabilities=m.Capabilities(add=["SETUID", "SETGID", "SYS_CHROOT"]),
            ),
            termination_message_policy="FallbackToLogsOnError",
        )
        outputs = {
            "images": "{{tasks.record-images.outputs.parameters.images}}",
            "commit": "{{tasks.plan-images.outputs.parameters.commit}}",
        }
        with DAG(name="main", outputs=main_outputs(outputs)):
            plan = plan_images(
                name="plan-images",
                arguments={
                    key: param(workflow, key)
                    for key in ("images-config", "registry", "variant", "torch-index", "insecure")
                },
            )
            builds = build_image(
                name="build",
                with_param=plan.get_parameter("builds").value,
                arguments={
                    "name": "{{item.name}}",
                    "dockerfile": "{{item.dockerfile}}",
                    "ref": "{{item.ref}}",
                    "build-args": "{{item.build-args}}",
                },
            )
            record = record_images(
                name="record-images",
                arguments={
                    "planned": plan.get_parameter("planned").value,
                    "insecure": param(workflow, "insecure"),
                },
            )
            plan >> builds  # type: ignore[operator]
            # An empty build list skips the build task (Argo: "Skipped, empty params").
            record.depends = "build.Succeeded || build.Skipped"  # type: ignore[union-attr]
    return workflow


PIPELINE = Pipeline(
    NAME,
    "build the steps and serving images with buildah, skipping those the registry already holds",
    build,
)

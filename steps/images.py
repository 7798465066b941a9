"""The build-images steps: plan which images need building, then record what the registry holds.

`plan-images` reads the source tree (a git checkout at the release's revision), computes each
image's content tag from its inputs (`steps.image_inputs`), resolves its base image to a
digest, and asks the registry whether the tag is there already. Only the missing images go
to the build step; `record-images` then reads every image's digest back from the registry,
so the outputs name exactly what a later pipeline will pull.

    python -m hera.workflows.runner -e steps.images:plan_images <inputs.json>
"""

import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Annotated, Any

from hera.workflows import Parameter, script
from hera.workflows import models as m
from hera.workflows.io import Output

import steps._hera  # noqa: F401  (the step template defaults: runner, image)
from steps.errors import StepError
from steps.image_inputs import content_tag, input_digest
from steps.registry import Registry, archive_digest, parse_reference

log = logging.getLogger("llmflow.images")

#: Where the source checkout is mounted in the build pods.
SOURCE_PATH = "/workspace/src"
#: Where the registry credentials Secret is mounted (its `.dockerconfigjson` key).
AUTH_MOUNT = "/auth"
AUTH_FILE = f"{AUTH_MOUNT}/.dockerconfigjson"
#: The archive prefix of a base image kept as a file (local builds).
ARCHIVE = "oci-archive:"


#: The Secret volume of registry credentials (optional: a registry may need none).
AUTH_VOLUME = "registry-auth"
AUTH_ENV = [m.EnvVar(name="REGISTRY_AUTH_FILE", value=AUTH_FILE)]
AUTH_MOUNTS = [m.VolumeMount(name=AUTH_VOLUME, mount_path=AUTH_MOUNT, read_only=True)]
_AUTH = dict(env=AUTH_ENV, volume_mounts=AUTH_MOUNTS)


def source_artifact() -> m.Artifact:
    """The source tree at the requested revision, cloned by Argo before the step starts."""
    return m.Artifact(
        name="source",
        path=SOURCE_PATH,
        git=m.GitArtifact(
            repo="{{workflow.parameters.repo}}", revision="{{workflow.parameters.revision}}"
        ),
    )


class ImagePlan(Output):
    """What to build, and every image's reference."""

    builds: Annotated[str, Parameter(name="builds", description="JSON list of the images to build")]
    images: Annotated[
        str, Parameter(name="planned", description="JSON: image name to content-tagged reference")
    ]
    commit: Annotated[str, Parameter(name="commit", description="the source commit built")]


class ImageRecord(Output):
    """The built images, by digest."""

    images: Annotated[
        str, Parameter(name="images", description="JSON: image name to registry/repo@sha256:...")
    ]


def declared_args(dockerfile: str) -> set[str]:
    """The build arguments a Dockerfile declares (`ARG NAME[=default]`)."""
    names = re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile, flags=re.M | re.I)
    return set(names)


def resolve_base(base: str, registry: Registry) -> tuple[str, str]:
    """A base image as the build takes it, and the digest that stands for it in the content tag.

    A tag is resolved to its digest now, and the build is given `repo@digest`: the image is
    built on exactly what the tag named when it was planned.
    """
    if base.startswith(ARCHIVE):
        path = Path(base.removeprefix(ARCHIVE)).resolve()
        return f"{ARCHIVE}{path}", archive_digest(path)
    ref = parse_reference(base)
    if ref.digest:
        return base, ref.digest
    digest = registry.manifest_digest(ref)
    if digest is None:
        raise StepError(
            f"base image {base}: the registry {ref.registry} has no such tag; fix "
            "images.<name>.base in the release spec"
        )
    return ref.with_digest(digest), digest


def _commit(context: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(context), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def _auth_file() -> Path | None:
    path = Path(os.environ.get("REGISTRY_AUTH_FILE", ""))
    return path if path.is_file() else None


@script(inputs=[source_artifact()], **_AUTH)  # type: ignore[arg-type]
def plan_images(
    images: Annotated[
        str,
        Parameter(
            name="images-config",
            description="JSON: image name to {dockerfile, base}",
        ),
    ],
    registry: Annotated[str, Parameter(name="registry", description="where images go: host/path")],
    variant: Annotated[str, Parameter(name="variant", description="torch build: cpu or cuda")],
    torch_index: Annotated[
        str, Parameter(name="torch-index", description="PyTorch wheel index mirror; empty: default")
    ] = "",
    insecure: Annotated[
        str, Parameter(name="insecure", description="true: the registry speaks plain HTTP")
    ] = "false",
    context: Annotated[
        str, Parameter(name="context", description="the source checkout")
    ] = SOURCE_PATH,
) -> ImagePlan:
    """Content tags of the images, and which of them the registry lacks."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(context)
    client = Registry(_auth_file(), insecure=insecure == "true")
    config: dict[str, dict[str, str]] = json.loads(images)
    builds: list[dict[str, Any]] = []
    planned: dict[str, str] = {}
    for name, image in sorted(config.items()):
        dockerfile = (root / image["dockerfile"]).read_text()
        declared = declared_args(dockerfile)
        args: dict[str, str] = {}
        digest_args: dict[str, str] = {}
        if image.get("base"):
            args["BASE"], digest_args["BASE"] = resolve_base(image["base"], client)
        if "VARIANT" in declared:
            args["VARIANT"] = digest_args["VARIANT"] = variant
        if "TORCH_INDEX" in declared and torch_index:
            args["TORCH_INDEX"] = torch_index  # a mirror serves the same wheels: not an input
        unknown = set(args) - declared
        if unknown:
            raise StepError(
                f"{image['dockerfile']}: declares no ARG {', '.join(sorted(unknown))}; add it or "
                f"drop images.{name}.base"
            )
        digest, files = input_digest(root, image["dockerfile"], digest_args)
        ref = parse_reference(f"{registry}/{name}:{content_tag(digest)}")
        planned[name] = str(ref)
        existing = client.manifest_digest(ref)
        if existing:
            log.info("%s: %s is in the registry (%s): skipped", name, ref, existing)
            continue
        log.info("%s: %s is new (%d input files): build", name, ref, len(files))
        builds.append(
            {
                "name": name,
                "dockerfile": image["dockerfile"],
                "ref": str(ref),
                "build-args": " ".join(f"--build-arg={k}={v}" for k, v in sorted(args.items())),
            }
        )
    return ImagePlan(builds=json.dumps(builds), images=json.dumps(planned), commit=_commit(root))


@script(**_AUTH)  # type: ignore[arg-type]
def record_images(
    planned: Annotated[
        str, Parameter(name="planned", description="JSON: image name to content-tagged reference")
    ],
    insecure: Annotated[
        str, Parameter(name="insecure", description="true: the registry speaks plain HTTP")
    ] = "false",
) -> ImageRecord:
    """Every image by the digest the registry holds for its content tag."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    client = Registry(_auth_file(), insecure=insecure == "true")
    out: dict[str, str] = {}
    for name, reference in sorted(json.loads(planned).items()):
        ref = parse_reference(reference)
        digest = client.manifest_digest(ref)
        if digest is None:
            raise StepError(f"{name}: {reference} is not in the registry after the build")
        out[name] = ref.with_digest(digest)
        log.info("%s: %s", name, out[name])
    return ImageRecord(images=json.dumps(out))

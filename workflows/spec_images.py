"""The `images:` section of a release spec: what the build-images pipeline builds, and where to."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from workflows.spec_base import Section, dns_label

_IMAGE_REF = re.compile(
    r"^(oci-archive:.+|[a-z0-9]+([._\-/:][a-z0-9]+)*(:[\w][\w.\-]{0,127})?(@sha256:[0-9a-f]{64})?)$"
)


class ImageSpec(Section):
    """One image the build-images pipeline builds."""

    dockerfile: str = Field(description="the Dockerfile, relative to the repository root")
    base: str | None = Field(
        default=None,
        description="the image it builds on (tag or @sha256 digest), or oci-archive:PATH for a "
        "base kept as a file; default: the Dockerfile's own `ARG BASE`",
    )

    @field_validator("base")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_REF.match(value):
            raise ValueError(
                "must be an image reference (registry/repo:tag or registry/repo@sha256:<hex>) "
                "or oci-archive:PATH"
            )
        return value


class SourceSpec(Section):
    """The git repository and revision images are built from."""

    repo: str = Field(
        description="git URL the cluster clones; a path (such as `.`) works for local runs only"
    )
    revision: str = Field(default="HEAD", description="branch, tag or commit to build")


class ImagesSpec(Section):
    """Where images are built from and pushed to (the build-images pipeline)."""

    registry: str = Field(
        description="registry and path images are pushed to: <registry>/<name>:<content tag>"
    )
    insecure: bool = Field(default=False, description="the registry speaks plain HTTP")
    credentials_secret: str = Field(
        default="llmflow-registry",
        description="Secret of type kubernetes.io/dockerconfigjson with push credentials; "
        "optional: a registry that needs none works without it",
    )
    variant: Literal["cpu", "cuda"] = Field(
        default="cpu", description="torch build of the steps image: cpu, or cuda for GPU nodes"
    )
    torch_index: str = Field(
        default="", description="mirror of the PyTorch wheel index; empty: download.pytorch.org"
    )
    builder: str = Field(
        default="quay.io/buildah/stable:v1.38.1", description="the buildah image builds run in"
    )
    storage_driver: Literal["vfs", "overlay"] = Field(
        default="vfs",
        description="buildah's storage: vfs works in any unprivileged pod; overlay is much "
        "faster where the kernel allows it (local builds as root)",
    )
    source: SourceSpec
    steps: ImageSpec = ImageSpec(dockerfile="steps/Dockerfile")
    serving: ImageSpec = ImageSpec(dockerfile="serving/Dockerfile")

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9.\-]+(:\d+)?(/[a-z0-9._\-]+)*$", value):
            raise ValueError("must be host[:port][/path], e.g. ghcr.io/acme/llmflow")
        return value.rstrip("/")

    @field_validator("credentials_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return dns_label(value, "a Secret name")

"""Asking a container registry what a tag points at, over the Distribution (v2) HTTP API.

The build pipeline needs two answers before it builds: does the registry already hold this
content tag (then skip), and which digest does a base image's tag name today (then build on
exactly that). Both are one HEAD request for a manifest. Credentials come from a Docker
config file (the `.dockerconfigjson` key of a Kubernetes Secret), as buildah reads them.
"""

from __future__ import annotations

import base64
import json
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from steps.errors import StepError

#: Manifest media types a HEAD asks for: an index first, so a multi-arch tag answers with the
#: index digest that `buildah pull` resolves too.
_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class Reference:
    """An image reference split as the registry API needs it."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host the API answers on (Docker Hub's differs from its name)."""
        return "registry-1.docker.io" if self.registry == _DOCKER_HUB else self.registry

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}"
        return f"{name}@{self.digest}" if self.digest else f"{name}:{self.tag}"

    def with_digest(self, digest: str) -> str:
        """`registry/repository@digest`: the reference that can never move."""
        return f"{self.registry}/{self.repository}@{digest}"


def parse_reference(ref: str) -> Reference:
    """`[registry/]repository[:tag][@digest]`, Docker Hub's defaults filled in."""
    ref = ref.removeprefix("docker://")
    name, _, digest = ref.partition("@")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = _DOCKER_HUB, name
    if registry == _DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not re.fullmatch(r"[a-z0-9]+(?:[._\-/][a-z0-9]+)*", repository):
        raise StepError(
            f"image reference {ref!r}: repository {repository!r} is not a valid name "
            "(lowercase letters, digits, and . _ - / between them)"
        )
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise StepError(f"image reference {ref!r}: {digest!r} is not a sha256 digest")
    return Reference(registry, repository, tag or (None if digest else "latest"), digest or None)


def _docker_config_auth(auth_file: Path | None, registry: str) -> str | None:
    """The `user:password` base64 for a registry from a Docker config file, if it has one."""
    if auth_file is None or not auth_file.is_file():
        return None
    try:
        auths = json.loads(auth_file.read_text()).get("auths", {})
    except (OSError, ValueError) as exc:
        raise StepError(
            f"registry credentials {auth_file}: not a Docker config file ({exc}); create the "
            "Secret with `kubectl create secret docker-registry NAME --docker-server=...`"
        ) from None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == _DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            if entry.get("auth"):
                return str(entry["auth"])
            if entry.get("username"):
                pair = f"{entry['username']}:{entry.get('password', '')}"
                return base64.b64encode(pair.encode()).decode()
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class Registry:
    """A client for HEAD-ing manifests, with Docker-style token and basic authentication."""

    def __init__(
        self, auth_file: Path | None = None, insecure: bool = False, timeout: float = 30
    ) -> None:
        self.auth_file = auth_file
        self.insecure = insecure
        self.timeout = timeout
        self._tokens: dict[str, str] = {}

    def _url(self, ref: Reference) -> str:
        scheme = "http" if self.insecure else "https"
        target = ref.digest or ref.tag
        return f"{scheme}://{ref.api_host}/v2/{ref.repository}/manifests/{target}"

    def _token(self, ref: Reference, params: dict[str, str]) -> str:
        query = {"service": params.get("service", ""), "scope": params.get("scope", "")}
        url = f"{params['realm']}?{urllib.parse.urlencode({k: v for k, v in query.items() if v})}"
        request = urllib.request.Request(url)
        basic = _docker_config_auth(self.auth_file, ref.registry)
        if basic:
            request.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = json.loads(response.read())
        return str(body.get("token") or body.get("access_token") or "")

    def manifest_digest(self, ref: Reference) -> str | None:
        """The digest the registry gives for a tag (or digest), or None when it has none.

        Raises:
            StepError: the registry cannot be reached or refuses the credentials.
        """
        url = self._url(ref)
        authorization = self._tokens.get(ref.repository)
        for _ in range(2):
            request = urllib.request.Request(url, method="HEAD", headers={"Accept": _ACCEPT})
            if authorization:
                request.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    digest = response.headers.get("Docker-Content-Digest")
                    if not digest:
                        raise StepError(f"{url}: the registry gave no Docker-Content-Digest")
                    return str(digest)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code != 401 or authorization:
                    raise StepError(
                        f"registry {ref.registry}: HEAD {url} answered {exc.code} {exc.reason}; "
                        "check the image name and the registry credentials Secret"
                    ) from None
                scheme, params = _challenge(exc.headers.get("WWW-Authenticate", ""))
                if scheme == "bearer" and "realm" in params:
                    authorization = f"Bearer {self._token(ref, params)}"
                    self._tokens[ref.repository] = authorization
                else:
                    basic = _docker_config_auth(self.auth_file, ref.registry)
                    if not basic:
                        raise StepError(
                            f"registry {ref.registry} asks for credentials and "
                            f"{self.auth_file or 'no credentials file'} has none for it; put "
                            "them in the registry Secret (images.credentials_secret)"
                        ) from None
                    authorization = f"Basic {basic}"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                hint = " (a plain-HTTP registry needs images.insecure: true)" * (not self.insecure)
                raise StepError(
                    f"registry {ref.registry} unreachable at {url}: {reason}{hint}"
                ) from None
        return None


def archive_digest(path: Path) -> str:
    """The manifest digest of an OCI archive (`oci-archive:PATH`), read from its index."""
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("index.json")
            if member is None:
                raise KeyError("index.json")
            index = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise StepError(
            f"base image oci-archive:{path}: not a readable OCI archive ({exc}); make one with "
            "`buildah commit CONTAINER oci-archive:PATH`"
        ) from None
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise StepError(
            f"base image oci-archive:{path}: holds {len(manifests)} images; name one archive "
            "per image"
        )
    return str(manifests[0]["digest"])

"""Container paths on one machine: volumes become folders, other absolute paths a per-node root.

A pod sees `/models` (a volume) and writes `/tmp/hera-outputs/parameters/path`; locally the
same command must touch a folder of the run instead. The mapper rewrites those paths where
they appear in commands, arguments, environment values, script sources and input values,
and tells the engine where to read outputs back. Only paths the template declares (volume
mounts, output and artifact paths, Hera's outputs folder) are rewritten, and only as whole
path prefixes: `s3://bucket/models` is left alone.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError

if TYPE_CHECKING:
    from workflows.local.platform import LocalPlatform

#: Mode of a Secret volume's files without `defaultMode`. The kubelet's is 0644, but there
#: the pod is alone on its filesystem; here any user of the machine could read 0644 files.
SECRET_MODE = 0o600


class PathMapper:
    """Maps container paths of one node to local paths."""

    def __init__(self, mounts: dict[str, Path], fs_root: Path) -> None:
        self.mounts = {m.rstrip("/") or "/": p for m, p in mounts.items()}
        self.fs_root = fs_root
        self._prefixes: set[str] = set(self.mounts)
        self._pattern: re.Pattern[str] | None = None

    def declare(self, container_path: str) -> None:
        """Rewrite this path prefix too (an output folder, an artifact path)."""
        self._prefixes.add(container_path.rstrip("/"))
        self._pattern = None

    def declare_output(self, container_path: str) -> None:
        """Declare a path a step writes, with its folder (a pod would find the folder there).

        The folder is rewritten too, so code that builds the path from it works, unless it is
        a top-level folder such as `/tmp`, which would catch unrelated host paths.
        """
        path = PurePosixPath(container_path)
        folder = path.parent
        self.declare(str(folder) if len(folder.parts) > 2 else container_path)
        self.local(str(folder)).mkdir(parents=True, exist_ok=True)
        if container_path.endswith("/"):  # a folder artifact (`path: /tmp/`): it exists in a pod
            self.local(container_path).mkdir(parents=True, exist_ok=True)

    def local(self, container_path: str) -> Path:
        """Where a container path lives on this machine."""
        path = PurePosixPath(container_path)
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == PurePosixPath(mount) or PurePosixPath(mount) in path.parents:
                return self.mounts[mount] / path.relative_to(mount)
        return self.fs_root / str(path).lstrip("/")

    def rewrite(self, text: str) -> str:
        """Replace declared container paths in a string by their local paths."""
        if not self._prefixes:
            return text
        if self._pattern is None:
            alternatives = "|".join(
                re.escape(p) for p in sorted(self._prefixes, key=len, reverse=True)
            )
            self._pattern = re.compile(rf"(?<![\w.\-/~])({alternatives})(?=/|$|[^\w.\-])")
        return self._pattern.sub(lambda m: str(self.local(m.group(1))), text)


def local_volumes(root: Path, volumes: list[dict[str, Any]], scratch: Path) -> dict[str, Path]:
    """Cluster volumes as local folders, by volume name.

    A PersistentVolumeClaim is `<root>/volumes/pvc/<claim>`, a hostPath
    `<root>/volumes/host/<path>` (never the real host path), a Secret
    `<scratch>/secrets/<name>` (filled by `fill_secret_volume` when a pod starts), anything
    else (emptyDir) a folder under `scratch`: the run's folder, or a node's for a template's
    own volumes.
    """
    out = {}
    for volume in volumes:
        if "persistentVolumeClaim" in volume:
            out[volume["name"]] = (
                root / "volumes" / "pvc" / volume["persistentVolumeClaim"]["claimName"]
            )
        elif "hostPath" in volume:
            out[volume["name"]] = root / "volumes" / "host" / volume["hostPath"]["path"].strip("/")
        elif "secret" in volume:
            out[volume["name"]] = scratch / "secrets" / volume["name"]
        else:
            out[volume["name"]] = scratch / "volumes" / volume["name"]
    return out


def pod_volumes(
    platform: LocalPlatform,
    run_volumes: Mapping[str, Path],
    spec: Mapping[str, Any],
    template: Mapping[str, Any],
    node_dir: Path,
) -> dict[str, Path]:
    """A pod's volumes as folders, its Secret volumes filled from the local platform.

    The template's own volumes win over the workflow's of the same name and are always the
    pod's; the workflow's are the pod's when a mount names them (addVolumeReferences in
    workflow/controller/workflowpod.go). A template's emptyDir and every Secret volume are
    folders of the node: a pod's own, its Secrets read as it starts, as the kubelet mounts them.

    Args:
        platform: Where Secrets are stored, and their namespace (the Workflow's).
        run_volumes: The workflow's volumes as `local_volumes` mapped them for the run.
        spec: The Workflow's spec (its `volumes`).
        template: The resolved container or script template.
        node_dir: The node's folder.

    Raises:
        RunError: a Secret volume cannot be filled (`fill_secret_volume`).
    """
    body = template.get("container") or template.get("script") or {}
    mounted = {m.get("name") for m in body.get("volumeMounts") or []}
    own = [v for v in spec.get("volumes") or [] if "secret" in v and v["name"] in mounted]
    own += template.get("volumes") or []
    volumes = {**run_volumes, **local_volumes(platform.home, own, node_dir)}
    for volume in {v["name"]: v for v in own}.values():
        if "secret" in volume:
            name = str(volume["secret"].get("secretName", ""))
            secret = platform.get("Secret", platform.namespace, name)
            fill_secret_volume(volume, volumes[volume["name"]], secret, platform.namespace)
    return volumes


def mapper_for(container: dict[str, Any], volumes: dict[str, Path], fs_root: Path) -> PathMapper:
    """A mapper for a container's volume mounts (creating the mounted folders)."""
    mounts = {}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise RunError(f"volumeMount {mount['name']!r} names no volume of the pod")
        mounts[mount["mountPath"]] = volumes[mount["name"]]
        volumes[mount["name"]].mkdir(parents=True, exist_ok=True)
    return PathMapper(mounts, fs_root)


def fill_secret_volume(
    volume: Mapping[str, Any], folder: Path, secret: Mapping[str, Any] | None, namespace: str
) -> None:
    """Write a Secret volume's files into its folder, as the kubelet does when a pod starts.

    One file per key of the Secret, holding the decoded value; with `items`, only those keys,
    each at its `path` (with its `mode`). Files get `defaultMode`, else `SECRET_MODE` (0600).
    When the volume is `optional`, a missing Secret leaves the folder empty and a missing key
    of `items` is skipped, as the kubelet does. Unlike an env `secretKeyRef`, a volume never
    falls back to environment variables: it holds every key of the Secret, which the
    environment cannot list. Messages name keys, never values.

    Args:
        volume: The volume (`{name, secret: {secretName, optional, items, defaultMode}}`).
        folder: Its local folder; emptied first, so it holds the Secret as it is now.
        secret: The Secret as the local platform stores it (base64 `data`), or None.
        namespace: Where the Secret was looked up, for messages.

    Raises:
        RunError: the Secret or a key is missing and the volume is not optional, or a field
            has a bad value; the pod would not start.
    """
    name, spec = volume["name"], volume.get("secret") or {}
    secret_name, optional = spec.get("secretName", ""), bool(spec.get("optional"))
    where = f"volume {name!r} (Secret {secret_name!r})"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, mode=0o700)
    if secret is None:
        if optional:
            return
        raise RunError(
            f"volume {name!r} needs Secret {secret_name!r} in namespace {namespace!r}, which "
            "does not exist locally; create it before this step, with a resource template "
            "(`action: create`, a `kind: Secret` manifest with the keys in `stringData`), or "
            "make the volume `optional: true`"
        )
    data = secret.get("data") or {}
    default = _mode(spec.get("defaultMode"), f"{where}.defaultMode", SECRET_MODE)
    items = spec.get("items")
    wanted = [(k, k, default) for k in data] if not items else []
    for i, item in enumerate(items or []):
        key, path = item.get("key", ""), str(item.get("path", ""))
        if key not in data:
            if optional:
                continue
            raise RunError(
                f"{where}: items[{i}] names key {key!r}, which the Secret does not have "
                f"(keys: {', '.join(sorted(data)) or 'none'}); fix the key or add it to the Secret"
            )
        wanted.append((key, path, _mode(item.get("mode"), f"{where}.items[{i}].mode", default)))
    for key, path, mode in wanted:
        relative = PurePosixPath(path)
        if not path or relative.is_absolute() or ".." in relative.parts:
            raise RunError(
                f"{where}: the file of key {key!r} would be {path!r}; a key's path must be "
                "relative and without '..' (set `items[].path`)"
            )
        try:
            value = base64.b64decode(str(data[key]), validate=True)
        except binascii.Error:
            raise RunError(
                f"{where}: key {key!r} is not valid base64 in the stored Secret"
            ) from None
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        os.chmod(target, mode)


def _mode(value: Any, where: str, default: int) -> int:
    """A file mode field (an int, as YAML reads `0400`); `default` when absent."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise RunError(
            f"{where} = {value!r} is not a file mode; give one from 0 to 0777 (511), "
            "e.g. 0400 (256)"
        )
    return value

"""Container paths on one machine: volumes become folders, other absolute paths a per-node root.

A pod sees `/models` (a volume) and writes `/tmp/hera-outputs/parameters/path`; locally the
same command must touch a folder of the run instead. The mapper rewrites those paths where
they appear in commands, arguments, environment values, script sources and input values,
and tells the engine where to read outputs back. Only paths the template declares (volume
mounts, output and artifact paths, Hera's outputs folder) are rewritten, and only as whole
path prefixes: `s3://bucket/models` is left alone.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from workflows.exceptions import RunError


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
    `<root>/volumes/host/<path>` (never the real host path), anything else (emptyDir) a
    folder under `scratch`, the run's own folder.
    """
    out = {}
    for volume in volumes:
        if "persistentVolumeClaim" in volume:
            out[volume["name"]] = (
                root / "volumes" / "pvc" / volume["persistentVolumeClaim"]["claimName"]
            )
        elif "hostPath" in volume:
            out[volume["name"]] = root / "volumes" / "host" / volume["hostPath"]["path"].strip("/")
        else:
            out[volume["name"]] = scratch / "volumes" / volume["name"]
    return out


def mapper_for(container: dict[str, Any], volumes: dict[str, Path], fs_root: Path) -> PathMapper:
    """A mapper for a container's volume mounts (creating the mounted folders)."""
    mounts = {}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise RunError(f"volumeMount {mount['name']!r} names no volume of the pod")
        mounts[mount["mountPath"]] = volumes[mount["name"]]
        volumes[mount["name"]].mkdir(parents=True, exist_ok=True)
    return PathMapper(mounts, fs_root)

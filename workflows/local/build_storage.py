"""Buildah storage of one session's own, in a folder, removed with everything in it.

A build pod on a cluster keeps its layers in the pod's own storage, which goes with the pod.
A local build keeps them in `/var/lib/containers` unless told otherwise, where each build of
the steps image leaves gigabytes: its torch and locked-dependency layers are rebuilt whenever
a build argument differs (a local wheel index on a new port, say), so nothing is reused and
nothing is freed. The demo and the tests give their builds a storage of their own instead,
through `CONTAINERS_STORAGE_CONF`, which buildah (run as the build pod's command) reads, and
remove it when they end.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType


class BuildStorage:
    """Buildah's graph root and run root in `folder`; `env()` points buildah at them.

    Use it as a context manager: on exit, buildah's containers are removed and its mounts
    released (overlay layers stay mounted while a container holds them), then the folder.
    """

    def __init__(self, folder: Path, driver: str = "") -> None:
        self.folder = folder.resolve()
        self.driver = driver

    @property
    def conf(self) -> Path:
        """The storage.conf that names the folders."""
        return self.folder / "storage.conf"

    def env(self) -> dict[str, str]:
        """The environment that makes buildah use this storage (STORAGE_DRIVER still wins)."""
        return {"CONTAINERS_STORAGE_CONF": str(self.conf)}

    def buildah(self) -> list[str]:
        """The buildah command with this storage's global flags."""
        args = ["buildah", "--root", str(self.folder / "root")]
        args += ["--runroot", str(self.folder / "run")]
        return args + (["--storage-driver", self.driver] if self.driver else [])

    def __enter__(self) -> BuildStorage:
        self.folder.mkdir(parents=True, exist_ok=True)
        driver = f'driver = "{self.driver}"\n' if self.driver else ""
        self.conf.write_text(
            f'[storage]\n{driver}graphroot = "{self.folder}/root"\nrunroot = "{self.folder}/run"\n'
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every container, image and layer, then the folder; never raises."""
        if (self.folder / "root").exists() and shutil.which("buildah"):
            for words in (["rm", "--all"], ["rmi", "--all", "--force"]):
                subprocess.run([*self.buildah(), *words], capture_output=True, timeout=600)
        shutil.rmtree(self.folder, ignore_errors=True)

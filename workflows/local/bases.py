"""A stand-in base image for local builds, made from scratch with buildah.

The Dockerfiles start from pinned public images (a Python image for the steps, vLLM's for
serving) that cannot be pulled on a machine without access to their registries. A local
build names an OCI archive instead (`images.<name>.base: oci-archive:PATH` in the release
spec); this module makes one from the machine's own CPython: its interpreter, standard
library (with `ensurepip`, so `python -m venv` gives pip) and the shared libraries it and
manylinux wheels load, plus busybox for `/bin/sh`. It is a stand-in that runs the
Dockerfiles' instructions, not a copy of the images they name: it has no vLLM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from workflows.exceptions import LLMFlowError

#: Parts of the standard library a headless step never imports: left out to stay small.
_STDLIB_SKIP = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "__pycache__")
#: Libraries manylinux wheels (torch, numpy, tokenizers) take from the system.
_WHEEL_LIBS = ("libstdc++.so.6", "libgcc_s.so.1", "libz.so.1")
_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def buildah_base_args(storage: Path | None) -> list[str]:
    """Global flags of buildah: vfs storage (needs no overlay mounts), in `storage` if given."""
    args = ["--storage-driver", "vfs"]
    if storage is not None:
        args += ["--root", str(storage / "root"), "--runroot", str(storage / "run")]
    return args


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LLMFlowError(f"{' '.join(args[:3])}... failed: {proc.stderr.strip()[-800:]}")
    return proc.stdout.strip()


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries `ldd` resolves for these binaries (the loader included)."""
    libs: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            words = line.split()
            if "=>" in words and len(words) > words.index("=>") + 1:
                target = words[words.index("=>") + 1]
                if target.startswith("/"):
                    libs.add(Path(target))
            elif words and words[0].startswith("/"):
                libs.add(Path(words[0]))
    return libs


def _copy(src: Path, rootfs: Path, dest: str | None = None) -> None:
    target = rootfs / (dest or str(src)).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.resolve(), target)


def _fill_rootfs(rootfs: Path) -> None:
    """Copy the interpreter, its library folder and what they load into `rootfs`."""
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = prefix / "bin" / version
    stdlib = Path(sysconfig.get_paths(vars={"base": str(prefix)})["stdlib"])
    busybox = shutil.which("busybox")
    if not interpreter.exists() or busybox is None:
        raise LLMFlowError(
            f"a stand-in base needs {interpreter} and busybox; install busybox-static "
            "(apt-get install busybox-static)"
        )
    # Same absolute prefix as here: the interpreter finds its library by its RUNPATH.
    _copy(interpreter, rootfs)
    for lib in (prefix / "lib").glob("libpython*.so*"):
        _copy(lib, rootfs)
    shutil.copytree(
        stdlib,
        rootfs / str(stdlib).lstrip("/"),
        ignore=shutil.ignore_patterns(*_STDLIB_SKIP),
        symlinks=True,
    )
    (rootfs / str(stdlib).lstrip("/") / "site-packages").mkdir(exist_ok=True)
    dynload = sorted((stdlib / "lib-dynload").glob("*.so"))
    libdir = Path("/lib") / f"{os.uname().machine}-linux-gnu"
    wheel_libs = [libdir / name for name in _WHEEL_LIBS if (libdir / name).exists()]
    for lib in _shared_libraries([interpreter, *dynload, *wheel_libs]) | set(wheel_libs):
        _copy(lib, rootfs)
        # Debian keeps libraries in /lib and /usr/lib alike (merged /usr).
        _copy(lib, rootfs, "/usr" + str(lib) if not str(lib).startswith("/usr") else None)
    bin_dir = rootfs / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python3", "python", version):
        (bin_dir / name).symlink_to(interpreter)
    _copy(Path(busybox), rootfs, "/bin/busybox")
    for applet in _run([busybox, "--list"]).split():
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (rootfs / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    if Path(_CA_BUNDLE).exists():
        _copy(Path(_CA_BUNDLE), rootfs)


def build_python_base(archive: Path, storage: Path | None = None) -> Path:
    """Write an OCI archive of a Python base image made from this machine's CPython.

    Returns the archive's path. An existing archive is kept: it only depends on the machine.
    """
    if archive.exists():
        return archive
    if shutil.which("buildah") is None:
        raise LLMFlowError("buildah not found; `make test` installs it (apt-get install buildah)")
    base = ["buildah", *buildah_base_args(storage)]
    container = _run([*base, "from", "scratch"])
    try:
        rootfs = Path(_run([*base, "mount", container]))
        _fill_rootfs(rootfs)
        _run([*base, "config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container])
        _run([*base, "config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container])
        if (rootfs / _CA_BUNDLE.lstrip("/")).exists():
            # This machine's trust store, as a company's base image carries its proxy's CA.
            for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
                _run([*base, "config", "--env", f"{var}={_CA_BUNDLE}", container])
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        _run([*base, "commit", "--rm", container, f"oci-archive:{partial}"])
        container = ""
        partial.rename(archive)
    finally:
        if container:
            subprocess.run([*base, "rm", container], capture_output=True)
    return archive

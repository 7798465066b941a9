"""A local stand-in for the PyTorch wheel index, for image builds on a machine without it.

The steps image installs torch from download.pytorch.org (`images.torch_index` names a
mirror). Where that site is out of reach but a torch wheel lies on disk (pip's find-links),
this serves it as a PEP 503 simple index on 127.0.0.1, which the build reaches because
buildah's chroot isolation shares the host's network.
"""

from __future__ import annotations

import functools
import html
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from workflows.exceptions import LLMFlowError


class LocalWheelIndex:
    """Serves wheels from a folder as `<url>/<project>/` pages of a simple index."""

    def __init__(self, wheels: list[Path], folder: Path) -> None:
        if not wheels:
            raise LLMFlowError("a wheel index needs at least one wheel")
        self.folder = folder
        self._server: ThreadingHTTPServer | None = None
        projects: dict[str, list[Path]] = {}
        for wheel in wheels:
            projects.setdefault(wheel.name.split("-")[0].lower().replace("_", "-"), []).append(
                wheel
            )
        for project, files in projects.items():
            page = folder / project
            page.mkdir(parents=True, exist_ok=True)
            links = []
            for wheel in files:
                target = page / wheel.name
                if not target.exists():
                    target.symlink_to(wheel.resolve())
                links.append(f'<a href="{quote(wheel.name)}">{html.escape(wheel.name)}</a><br>')
            (page / "index.html").write_text("<html><body>" + "".join(links) + "</body></html>")

    @property
    def url(self) -> str:
        """The index URL pip takes (`--index-url`)."""
        if self._server is None:
            raise LLMFlowError("the wheel index is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> LocalWheelIndex:
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def find_torch_wheel(find_links: list[Path]) -> Path | None:
    """A CPU torch 2.13.0 wheel in these folders, if one lies there."""
    for folder in find_links:
        for wheel in sorted(folder.glob("torch-2.13.0+cpu-*.whl")):
            return wheel
    return None

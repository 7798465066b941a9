"""Showing a run: a live tree while it runs (like `argo submit --watch`), the same tree after.

On a terminal the tree redraws in place; elsewhere (CI, a log file) each node's change of
phase is one line, so logs stay readable.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:
    from workflows.local.engine import Run

_STYLE = {
    "Succeeded": ("✔", "green"),
    "Failed": ("✖", "red"),
    "Error": ("⚠", "red"),
    "Running": ("●", "cyan"),
    "Pending": ("◷", "yellow"),
    "Skipped": ("○", "dim"),
    "Omitted": ("∅", "dim"),
}


def make_console(stderr: bool = True) -> Console:
    """A console; when output is not a terminal, wide enough that paths and digests stay whole."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=max(console.width, 240))


def _label(node: dict[str, Any], outputs: bool) -> Text:
    icon, style = _STYLE.get(node.get("phase", ""), ("?", ""))
    text = Text(f"{icon} ", style=style)
    text.append(node.get("displayName", node.get("name", "")), style="bold")
    if node.get("templateName") and node.get("type") not in {"StepGroup"}:
        text.append(f"  {node['templateName']}", style="dim")
    if node.get("durationSeconds"):
        text.append(f"  {node['durationSeconds']:.1f}s", style="dim")
    if node.get("message"):
        text.append(f"  {node['message']}", style=style or "dim")
    if outputs:
        for p in (node.get("outputs") or {}).get("parameters") or []:
            text.append(f"\n    {p['name']} = {p['value']}", style="dim")
    return text


def render(status: dict[str, Any], outputs: bool = False) -> Group:
    """The run's nodes as a tree (the exit handler below the main tree)."""
    nodes = status.get("nodes") or {}
    name = status.get("metadata", {}).get("name", "")
    phase = status.get("phase", "")
    icon, style = _STYLE.get(phase, ("?", ""))
    header = Text(f"{icon} {name}  {phase}", style=f"bold {style}")
    if status.get("message"):
        header.append(f"  {status['message']}", style=style)
    trees: list[Any] = [header]
    roots = [n for i, n in nodes.items() if i == name or n.get("name", "").endswith(".onExit")]
    for root in sorted(roots, key=lambda n: n.get("name", "").endswith(".onExit")):
        tree = Tree(_label(root, outputs))
        _grow(tree, root, nodes, outputs)
        trees.append(tree)
    return Group(*trees)


def _grow(tree: Tree, node: dict[str, Any], nodes: dict[str, Any], outputs: bool) -> None:
    for child_id in node.get("children") or []:
        child = nodes.get(child_id)
        if child is not None:
            _grow(tree.add(_label(child, outputs)), child, nodes, outputs)


class LiveView:
    """Follows a run: pass `on_change` to `RunOptions`, and use as a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console()
        self._live: Live | None = None
        self._status: dict[str, Any] = {}
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def on_change(self, run: Run) -> None:
        """Called by the engine after every change."""
        status = run.status()
        with self._lock:
            self._status = status
            if self._live is not None:
                return
            for node in status["nodes"].values():
                if node["phase"] == "Pending":
                    continue
                key = f"{node['phase']} {node.get('message', '')}"
                if self._seen.get(node["id"]) != key:
                    self._seen[node["id"]] = key
                    message = f"  {node['message']}" if node.get("message") else ""
                    self.console.print(
                        f"{node['name']}: {node['phase']}{message}", highlight=False, soft_wrap=True
                    )

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(
                console=self.console,
                refresh_per_second=4,
                get_renderable=lambda: render(self._status) if self._status else Text(""),
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

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
    ref = node.get("templateRef") or {}
    template = node.get("templateName") or (f"{ref['name']}/{ref['template']}" if ref else "")
    if template and node.get("type") not in {"StepGroup"}:
        text.append(f"  {template}", style="dim")
    if node.get("durationSeconds"):
        text.append(f"  {node['durationSeconds']:.1f}s", style="dim")
    if node.get("message"):
        # A message with log lines in it (a failed step's last output) shows its last line.
        text.append(f"  {node['message'].strip().splitlines()[-1]}", style=style or "dim")
    if outputs:
        for p in (node.get("outputs") or {}).get("parameters") or []:
            text.append(f"\n    {p['name']} = {p['value']}", style="dim")
    return text


def render(status: dict[str, Any], outputs: bool = False) -> Group:
    """The run's nodes as a tree (the exit handler below the main tree).

    Argo's `children` form a graph (a DAG task hangs below each task it depends on); the tree
    shows containment instead, read from the node names (`wf.task`, `wf[0].step`,
    `wf.task(0:item)`), so each node appears once, below the template that ran it.
    """
    nodes = status.get("nodes") or {}
    name = status.get("metadata", {}).get("name", "")
    phase = status.get("phase", "")
    icon, style = _STYLE.get(phase, ("?", ""))
    header = Text(f"{icon} {name}  {phase}", style=f"bold {style}")
    if status.get("message"):
        header.append(f"  {status['message']}", style=style)
    trees: list[Any] = [header]
    below = _containment(nodes)
    roots = [n for n in nodes.values() if n.get("name") in {name, f"{name}.onExit"}]
    for root in sorted(roots, key=lambda n: n.get("name", "").endswith(".onExit")):
        tree = Tree(_label(root, outputs))
        _grow(tree, root, below, outputs)
        trees.append(tree)
    return Group(*trees)


def _containment(nodes: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each node's name -> the nodes directly inside it, in the order they were created."""
    names = {n.get("name", "") for n in nodes.values()}
    below: dict[str, list[dict[str, Any]]] = {}
    for node in nodes.values():
        name = node.get("name", "")
        for cut in range(len(name) - 1, 0, -1):
            if name[cut] in ".[(" and name[:cut] in names and not name.endswith(".onExit"):
                below.setdefault(name[:cut], []).append(node)
                break
    return below


def _grow(
    tree: Tree, node: dict[str, Any], below: dict[str, list[dict[str, Any]]], outputs: bool
) -> None:
    for child in below.get(node.get("name", ""), []):
        _grow(tree.add(_label(child, outputs)), child, below, outputs)


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

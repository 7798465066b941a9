"""`parallelism` and `failFast` of DAG and steps templates, as Argo's `checkParallelism` has them.

A template with `parallelism: N` runs at most N of its children (pods, steps and DAG nodes
inside its boundary) at once; the others wait. With `failFast: true`, once a child failed or
errored no further child starts; children already running finish, and the template then
fails with "template has failed or errored children and failFast enabled". The workflow's
own `spec.parallelism` caps the pods running at once across the whole run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from workflows.local.store import FAILED, Node

#: Node types `failFast` and `parallelism` count (Argo's node_counters.go).
_COUNTED = frozenset({"Pod", "Steps", "DAG"})


class Gate:
    """Admission of a boundary's children under its template's parallelism and failFast."""

    def __init__(
        self, template: dict[str, Any], boundary: Node, nodes: Callable[[], list[Node]]
    ) -> None:
        limit = template.get("parallelism")
        self._slots = threading.Semaphore(int(limit)) if limit not in (None, "", 0) else None
        self._fail_fast = template.get("failFast") is True
        self._boundary = boundary.id
        self._nodes = nodes

    def enter(self) -> bool:
        """Wait for a slot; False when failFast has tripped and the child must not start."""
        if self._slots is not None:
            self._slots.acquire()
        if self.tripped():
            self.leave()
            return False
        return True

    def leave(self) -> None:
        """Give the slot back."""
        if self._slots is not None:
            self._slots.release()

    def tripped(self) -> bool:
        """Whether failFast is on and a child of the boundary failed or errored."""
        return self._fail_fast and any(
            n.boundary_id == self._boundary and n.type in _COUNTED and n.phase in FAILED
            for n in self._nodes()
        )


class OpenGate(Gate):
    """The gate of a node whose template sets neither parallelism nor failFast."""

    def __init__(self) -> None:
        self._slots = None
        self._fail_fast = False
        self._boundary = ""
        self._nodes = list

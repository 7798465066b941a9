"""The `llmflow runs` commands: look at the local runs under `--root`, resume or delete one.

`llmflow run` keeps each run's status, workflow and node logs in `ROOT/runs/NAME`; these
commands only read that folder, except `resume`, which leaves there the marker file that the
run's suspended nodes wait for, and `delete`, which removes it with the objects the run owns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from workflows.cli_options import local_root_option

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """`workflows.cli._friendly`, looked up when called: `workflows.cli` imports this module."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workflows.cli import _friendly as friendly

        return friendly(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.group("runs")
@local_root_option("The local engine's folder: runs, volumes, locks, local objects.")
@click.pass_context
def runs_group(ctx: click.Context, root: Path) -> None:
    """Inspect and resume local runs."""
    ctx.obj = root


@runs_group.command("list")
@click.pass_obj
def runs_list(root: Path) -> None:
    """List local runs, newest first."""
    from workflows.local.store import list_runs

    for status in list_runs(root):
        meta = status.get("metadata", {})
        click.echo(
            f"{meta.get('name', ''):45} {status.get('phase', ''):10} {status.get('startedAt', '')}"
        )


@runs_group.command("get")
@click.argument("name")
@click.pass_obj
@_friendly
def runs_get(root: Path, name: str) -> None:
    """Show a run's tree of nodes with phases, timings and output parameters."""
    from workflows.local.store import RunStore
    from workflows.local.view import make_console, render

    status = RunStore(root.resolve(), name).read_status()
    make_console(stderr=False).print(render(status, outputs=True))


@runs_group.command("logs")
@click.argument("name")
@click.option("--node", "node_filter", help="Only nodes whose name contains this.")
@click.pass_obj
@_friendly
def runs_logs(root: Path, name: str, node_filter: str | None) -> None:
    """Print the logs of a run's nodes."""
    from workflows.local.store import RunStore

    store = RunStore(root.resolve(), name)
    nodes = store.read_status()["nodes"]
    for node_id, node in nodes.items():
        log = store.path / "nodes" / node_id / "main.log"
        if log.exists() and (not node_filter or node_filter in node["name"]):
            click.echo(f"--- {node['name']}")
            click.echo(log.read_text(errors="replace"), nl=False)


@runs_group.command("resume")
@click.argument("name")
@click.pass_obj
@_friendly
def runs_resume(root: Path, name: str) -> None:
    """Resume a run's suspended nodes."""
    from workflows.local.store import RunStore

    store = RunStore(root.resolve(), name)
    store.read_status()
    store.resume_marker.touch()
    click.echo(f"resumed {name}")


@runs_group.command("delete")
@click.argument("name")
@click.pass_obj
@_friendly
def runs_delete(root: Path, name: str) -> None:
    """Delete a finished run, and the objects it created with an owner reference to it.

    As `argo delete` and Kubernetes' garbage collector do: a training job created with
    `setOwnerReference` goes with its workflow; objects meant to outlive the run (a serving
    Deployment) carry no owner reference and stay.
    """
    import shutil

    from workflows.exceptions import RunError
    from workflows.local.platform import LocalPlatform
    from workflows.local.store import RunStore

    store = RunStore(root.resolve(), name)
    status = store.read_status()
    if status.get("phase") in {"Pending", "Running"}:
        raise RunError(
            f"run {name} is {status['phase']}; stop it first (Ctrl-C where `llmflow run` runs)"
        )
    meta = status.get("metadata") or {}
    platform = LocalPlatform(root.resolve(), meta.get("namespace") or "default")
    try:
        for deleted in platform.delete_owned_by(meta.get("uid") or ""):
            click.echo(f"{deleted} deleted (owned by {name})")
    finally:
        platform.close()
    shutil.rmtree(store.path)
    click.echo(f"run {name} deleted")

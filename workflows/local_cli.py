"""The `llmflow local` commands: what the local platform serves, and stopping it.

Deployments, Services, HTTPRoutes and ServiceMonitors created by `llmflow run` outlive the
run, as they do on a cluster: their processes (vLLM pods, the nginx gateway, Prometheus) keep
running detached. `llmflow local status` shows them; `llmflow local down` stops them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.group("local")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".llmflow"),
    show_default=True,
    help="The local engine's folder: runs, volumes, locks, local objects.",
)
@click.pass_context
def local_group(ctx: click.Context, root: Path) -> None:
    """Show or stop what the local platform keeps serving after `llmflow run`."""
    ctx.obj = root.resolve()


@local_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
@click.pass_obj
def local_status(root: Path, as_json: bool) -> None:
    """List serving objects, their processes, the gateway and Prometheus URLs.

    Like every look at the platform, it reconciles first, as the controllers would: a pod
    whose process died is restarted, and a rollout in progress moves on.
    """
    from workflows.local.kinds.overview import status

    report = status(root)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    objects, processes = report["objects"], report["processes"]
    if not objects and not processes:
        click.echo("nothing is served locally")
        return
    click.echo(f"{'KIND':24} {'NAMESPACE/NAME':40} {'READY':6} {'VERSION':10} NOTE")
    for obj in objects:
        click.echo(
            f"{obj['kind']:24} {obj['namespace'] + '/' + obj['name']:40} {obj['ready']:6} "
            f"{obj['version']:10} {obj['note']}"
        )
    click.echo("")
    click.echo(f"{'PROCESS':11} {'NAME':52} {'PID':>8} {'PORT':>12} ALIVE  HEALTHY")
    for proc in processes:
        extra = ""
        if proc["kind"] == "pod":
            extra = f"  ready={proc['ready']} restarts={proc['restarts']} version={proc['version']}"
            if proc["terminating"]:
                extra += " terminating"
        elif proc["kind"] == "relay":
            stats = proc.get("stats") or {}
            counts = [f"{k}={stats[k]}" for k in ("forwarded", "failed", "dropped") if k in stats]
            extra = "  " + " ".join(counts) if counts else ""
        click.echo(
            f"{proc['kind']:11} {proc['name']:52} {proc['pid'] or '-':>8} "
            f"{proc['port'] or '-':>12} {str(proc['alive']):6} {proc['healthy']}{extra}"
        )
    click.echo("")
    for key, url in report["gateways"].items():
        click.echo(f"gateway {key}: {url}")
    if report["prometheus"]:
        click.echo(f"prometheus: {report['prometheus']}")
    click.echo(f"services map: {report['services_map']}")
    if report["curl"]:
        click.echo(f"try: {report['curl']}")


@local_group.command("base-image")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".llmflow/bases/python.tar"),
    show_default=True,
    help="Where the OCI archive goes (releases/tiny.yaml names this path).",
)
def local_base_image(out: Path) -> None:
    """Write a stand-in Python base image (OCI archive) for local image builds.

    Made from scratch with buildah out of this machine's CPython, for builds where the public
    base images cannot be pulled; name it as `images.<name>.base: oci-archive:PATH`.
    """
    from workflows.local.bases import build_python_base

    click.echo(f"wrote {build_python_base(out)}")


@local_group.command("traffic")
@click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Release spec: the served model name and the probe set whose prompts are sent.",
)
@click.option("--url", help="Where to send (default: the local gateway `local status` shows).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=16, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to send for; 0: until Ctrl-C.",
)
@click.pass_obj
def local_traffic(
    root: Path, spec_path: Path, url: str | None, concurrency: int, max_tokens: int, duration: float
) -> None:
    """Play the users: keep streamed completions in flight against the gateway.

    Locally nobody sends the live traffic a shadow mirrors and a canary splits; run this beside
    `llmflow run deploy`. Every few seconds it prints what the client saw (answers, failures,
    latency); no prompt or answer text.
    """
    import time

    from serving.labels import served_name
    from serving.probe_sets import load_probe_set
    from serving.traffic import Traffic
    from workflows.local.kinds.overview import status
    from workflows.spec import load_spec

    spec = load_spec(spec_path)
    if spec.serving is None:
        raise click.UsageError(f"{spec_path} has no serving section: nothing is served to ask")
    if url is None:
        gateways = status(root)["gateways"]
        if not gateways:
            raise click.ClickException(
                "no local gateway is running: serve the model first (`llmflow run deploy -f "
                f"{spec_path}`), or give --url"
            )
        url = next(iter(gateways.values()))
    prompts = load_probe_set(spec.serving.probe.prompts)
    traffic = Traffic(
        url, served_name(spec), prompts, concurrency=concurrency, max_tokens=max_tokens
    )
    click.echo(f"sending to {url} with {concurrency} in flight; Ctrl-C stops")
    began = time.monotonic()
    traffic.start()
    try:
        while not duration or time.monotonic() - began < duration:
            left = duration - (time.monotonic() - began) if duration else 5.0
            time.sleep(max(0.0, min(5.0, left)))
            click.echo(f"{time.monotonic() - began:.0f} s: {traffic.stats.line()}")
    except KeyboardInterrupt:
        pass
    click.echo(f"done: {traffic.stop().line()}")


@local_group.command("down")
@click.pass_obj
def local_down(root: Path) -> None:
    """Stop every local serving process (pods, nginx, Prometheus) and remove their state."""
    from workflows.local.kinds.overview import down

    stopped = down(root)
    for line in stopped:
        click.echo(f"stopped {line}")
    click.echo("the local platform serves nothing" if stopped else "nothing was running")

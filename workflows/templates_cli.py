"""`llmflow templates`: the pipelines as WorkflowTemplates, for the Argo UI, schedules and tags.

`render` prints them (for `kubectl apply -f -` or a GitOps repository), `apply` puts them on
an Argo server through its API, or on the local platform (`--local`), where `llmflow run`
and `templateRef`s find them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from workflows.cli_options import argo_server_options, local_root_option

spec_option = click.option(
    "-f",
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Release spec the templates are rendered from, e.g. releases/tiny.yaml.",
)


@click.group("templates")
def templates_group() -> None:
    """Render or apply every pipeline as an Argo WorkflowTemplate, and the spec's schedules.

    The schedules (`schedules:` in the spec) are CronWorkflows that reference the templates.
    """


def checked_cron_workflows(spec: Any, templates: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's CronWorkflows, validated strictly."""
    from workflows.exceptions import ValidationFailed
    from workflows.schedules import cron_workflows
    from workflows.validation import SchemaRegistry, validate_documents

    crons = cron_workflows(spec, templates)
    documents = [(f"cronworkflow/{c['metadata']['name']}", c) for c in crons]
    problems = [p for p in validate_documents(documents, SchemaRegistry()) if not p.unchecked]
    if problems:
        raise ValidationFailed([str(p) for p in problems])
    return crons


@templates_group.command("render")
@spec_option
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <out>/<pipeline>.yaml instead of printing one YAML stream.",
)
def render_cmd(spec_path: Path, out_dir: Path | None) -> None:
    """Print the WorkflowTemplates (or write one file each), validated strictly."""
    from workflows.cli import _friendly
    from workflows.render import to_yaml
    from workflows.spec import load_spec
    from workflows.submit import needed_templates
    from workflows.templates import pipeline_templates

    @_friendly
    def go() -> None:
        spec = load_spec(spec_path)
        templates = pipeline_templates(spec)
        for name in templates:
            needed_templates(name, spec, spec.namespace, templates)  # validated strictly
        documents = {f"{n}.yaml": t for n, t in templates.items()}
        crons = checked_cron_workflows(spec, templates)
        documents.update({f"cron-{c['metadata']['name']}.yaml": c for c in crons})
        if out_dir is None:
            click.echo("---\n".join(to_yaml(d) for d in documents.values()), nl=False)
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        for file_name, document in documents.items():
            path = out_dir / file_name
            path.write_text(to_yaml(document))
            click.echo(str(path))

    go()


@templates_group.command("apply")
@spec_option
@click.option("--local", "local", is_flag=True, help="Apply to the local platform instead.")
@local_root_option("With --local: the local engine's folder.")
@argo_server_options
def apply_cmd(
    spec_path: Path,
    local: bool,
    root: Path,
    host: str | None,
    token: str | None,
    namespace: str | None,
    insecure: bool | None,
) -> None:
    """Create or update every pipeline's WorkflowTemplate and the spec's CronWorkflows."""
    from workflows.cli import _friendly
    from workflows.spec import load_spec
    from workflows.submit import ArgoServer, needed_templates
    from workflows.templates import pipeline_templates

    @_friendly
    def go() -> None:
        spec = load_spec(spec_path)
        if local:
            from workflows.api import apply_local_templates
            from workflows.local.templates import LocalTemplates

            for name in apply_local_templates(spec, LocalTemplates(root)):
                click.echo(f"workflowtemplate/{name} applied (local, {spec.namespace})")
            return
        server = ArgoServer.from_env(host, token, namespace, insecure)
        target = server.namespace or spec.namespace
        client = server.client()
        templates = pipeline_templates(spec)
        crons = checked_cron_workflows(spec, templates)
        for name in templates:
            template = needed_templates(name, spec, target, templates)[name]
            what, _ = client.apply(template, target)
            click.echo(f"workflowtemplate/{name} {what} ({target})")
        for cron in crons:
            cron = {**cron, "metadata": {**cron["metadata"], "namespace": target}}
            what, _ = client.apply(cron, target)
            click.echo(f"cronworkflow/{cron['metadata']['name']} {what} ({target})")

    if local and (host or token):
        raise click.UsageError("--local applies to this machine: drop --host/--token")
    go()

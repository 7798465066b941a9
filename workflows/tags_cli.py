"""`llmflow release-tag`: check a git tag before it releases anything.

CI runs `llmflow release-tag check "$GITHUB_REF_NAME"` first: GitHub Actions can only filter
tags by glob (`release/*/*`), which lets `release/tiny-llama/latest` through; this refuses it
with the reason, and prints the spec the tag releases for the next step to submit.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("release-tag")
def release_tag_group() -> None:
    """Git tags that release a model: release/<model>/<semver>."""


@release_tag_group.command("check")
@click.argument("tag")
@click.option(
    "--repo-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The checkout at TAG, holding releases/.",
)
def check_cmd(tag: str, repo_root: Path) -> None:
    """Check TAG (release/<model>/<semver>, or refs/tags/...) and print its release spec.

    The spec is releases/<model>.yaml, or the one spec whose model.name is <model>. Exits 2
    with the reason when the tag is malformed or no spec releases its model.
    """
    # Imported here: workflows.cli imports this module.
    from workflows.cli import _friendly
    from workflows.tags import spec_for_tag

    click.echo(str(_friendly(spec_for_tag)(tag, repo_root)))


@release_tag_group.command("triggers")
@click.option("--repo", required=True, help="Git URL of the repository holding releases/.")
@click.option(
    "--webhook-url",
    required=True,
    help="The EventSource's URL as the git host reaches it (your Ingress).",
)
@click.option(
    "-f",
    "--spec",
    "spec_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Release specs whose models tags may release (default: releases/*.yaml).",
)
def triggers_cmd(repo: str, webhook_url: str, spec_paths: tuple[Path, ...]) -> None:
    """Print the Argo Events EventSource and Sensor that release a model on a pushed tag.

    GitHub (github.com) or GitLab (gitlab.com, gitlab.*) by the repository's host; with the
    Sensor's service account and Role (submit Workflows, read WorkflowTemplates). Apply them
    with `kubectl apply -f -` where Argo Events runs.
    """
    from workflows.cli import _friendly
    from workflows.render import to_yaml
    from workflows.spec import load_spec
    from workflows.triggers import render_triggers

    def render() -> str:
        paths = list(spec_paths) or sorted(Path("releases").glob("*.yaml"))
        objects = render_triggers([load_spec(p) for p in paths], repo, webhook_url=webhook_url)
        return "---\n".join(to_yaml(o) for o in objects)

    click.echo(_friendly(render)(), nl=False)

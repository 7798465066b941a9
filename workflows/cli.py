"""The `llmflow` command line: render, lint and submit pipelines; fetch weights; make a tiny model.

Errors of ours print as one clear message (what is wrong, how to fix it) and exit 1 or 2;
only genuine bugs show a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from workflows import __version__
from workflows.canary_cli import canary_group
from workflows.cli_options import argo_server_options
from workflows.cluster_cli import cluster_group
from workflows.eval_cli import eval_group
from workflows.exceptions import LLMFlowError, ValidationFailed
from workflows.local_cli import local_group
from workflows.releases_cli import releases_group
from workflows.runs_cli import runs_group
from workflows.tags_cli import release_tag_group
from workflows.templates_cli import templates_group

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """Turn our own errors into a message and exit code instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ValidationFailed as exc:
            for line in exc.problems:
                click.echo(line)
            raise SystemExit(1) from None
        except LLMFlowError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


spec_option = click.option(
    "-f",
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Release spec YAML, e.g. releases/tiny.yaml.",
)


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".llmflow"),
    show_default=True,
    help="The local engine's folder: runs, volumes, locks, local objects.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmflow")
def main() -> None:
    """llmflow: Argo Workflows pipelines for the lifecycle of self-hosted LLMs."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)


@main.command("pipelines")
def pipelines_cmd() -> None:
    """List the pipelines this version provides."""
    from workflows.pipelines import discover

    for name, pipeline in discover().items():
        click.echo(f"{name:20} {pipeline.summary}")


@main.command()
@click.argument("pipeline")
@spec_option
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <out>/<pipeline>.yaml instead of printing.",
)
@_friendly
def render(pipeline: str, spec_path: Path, out_dir: Path | None) -> None:
    """Render PIPELINE for a release spec as Argo Workflow YAML."""
    from workflows import render as rendering
    from workflows.spec import load_spec

    spec = load_spec(spec_path)
    if out_dir is None:
        click.echo(rendering.to_yaml(rendering.render(pipeline, spec)), nl=False)
    else:
        click.echo(str(rendering.write(pipeline, spec, out_dir)))


@main.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-f",
    "--spec",
    "spec_paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With no FILES: render every pipeline with this spec (default: releases/*.yaml).",
)
@click.option(
    "--schemas",
    "schemas_dir",
    envvar="LLMFLOW_SCHEMAS",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of upstream schema files (Argo's schema-*.json, CRD YAML). Env: LLMFLOW_SCHEMAS.",
)
@click.option(
    "--crds",
    "crd_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="CRD YAML file or folder (e.g. `kubectl get crd NAME -o yaml`); repeatable.",
)
@click.option(
    "--kustomize",
    "kustomize_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also validate what `kubectl kustomize DIR` builds (e.g. cluster/overlays/prod); "
    "repeatable.",
)
@click.option(
    "--allow-unchecked",
    "allowed",
    multiple=True,
    metavar="KIND",
    help="Let KIND pass although no schema for it is available; repeatable.",
)
@_friendly
def lint(
    files: tuple[Path, ...],
    spec_paths: tuple[Path, ...],
    schemas_dir: Path | None,
    crd_paths: tuple[Path, ...],
    kustomize_dirs: tuple[Path, ...],
    allowed: tuple[str, ...],
) -> None:
    """Validate rendered YAML strictly; with no FILES, every pipeline.

    Prints one line per problem (document, field path, what is wrong) and exits 1 if there
    are any. Argo kinds are checked against Argo's schema (--schemas, --crds, or Hera's
    models), custom resources against their CRDs, built-in kinds with kubernetes-validate;
    a kind with no schema fails unless --allow-unchecked names it. --kustomize DIR checks
    the objects a kustomization builds (alone, when no FILES or -f are given with it).
    """
    from workflows.cluster_cli import kustomize_documents
    from workflows.render import render as render_pipeline
    from workflows.spec import load_spec
    from workflows.validation import SchemaRegistry, validate_documents, validate_files

    registry = SchemaRegistry.load(schemas_dir, crd_paths)
    problems = []
    count = 0
    for directory in kustomize_dirs:
        built = kustomize_documents(directory)
        problems += validate_documents(built, registry, allowed)
        count += len(built)
    if files:
        problems += validate_files(files, registry, allowed)
        count += len(files)
    elif spec_paths or not kustomize_dirs:
        from workflows.pipelines import discover

        specs = list(spec_paths) or sorted(Path("releases").glob("*.yaml"))
        if not specs:
            raise LLMFlowError("nothing to lint: give FILES, or -f SPEC, or run where releases/ is")
        docs = [
            (f"{name} ({path})", render_pipeline(name, load_spec(path)))
            for path in specs
            for name in discover()
        ]
        problems += validate_documents(docs, registry, allowed)
        count += len(docs)
    if problems:
        raise ValidationFailed([str(p) for p in problems])
    click.echo(f"ok: {count} checked (Argo schema from {registry.origin})", err=True)


def _overrides(sets: tuple[str, ...]) -> dict[str, str]:
    """`--set NAME=VALUE` options as a dict."""
    overrides = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise LLMFlowError(f"--set {item!r}: write NAME=VALUE")
        overrides[name] = value
    return overrides


set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a workflow parameter; repeatable.",
)


@main.command()
@click.argument("pipeline")
@click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Release spec the templates are rendered from (and checked against the server's). "
    "Without it, PIPELINE is a WorkflowTemplate as applied (needs -n).",
)
@set_option
@argo_server_options
@click.option(
    "--apply-templates",
    is_flag=True,
    help="Apply the spec's WorkflowTemplates first (else they must match the server's).",
)
@click.option("--wait", is_flag=True, help="Wait for the end; exit 0 only when it Succeeded.")
@click.option("--timeout", type=float, help="With --wait: the most seconds to wait.")
@_friendly
def submit(
    pipeline: str,
    spec_path: Path | None,
    sets: tuple[str, ...],
    host: str | None,
    token: str | None,
    namespace: str | None,
    insecure: bool | None,
    apply_templates: bool,
    wait: bool,
    timeout: float | None,
) -> None:
    """Start PIPELINE on an Argo server: a Workflow that references its WorkflowTemplate.

    The templates on the server must be what the spec renders (`llmflow templates apply -f
    SPEC`, or --apply-templates). Prints the workflow's name; with --wait, then its phase,
    message and outputs.
    """
    from workflows.api import submit as submit_pipeline
    from workflows.submit import ArgoServer

    server = ArgoServer.from_env(host, token, namespace, insecure)
    submission = submit_pipeline(
        pipeline,
        spec_path,
        parameters=_overrides(sets),
        target=server,
        apply_templates=apply_templates,
    )
    click.echo(submission.name)
    if wait:
        result = submission.wait(timeout)
        click.echo(f"{result.phase}{': ' + result.message if result.message else ''}")
        for key, value in result.outputs.items():
            click.echo(f"{key}: {value}")
        raise SystemExit(0 if result.succeeded else 1)


@main.command("run")
@click.argument("pipeline", required=False)
@click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Release spec to render PIPELINE with.",
)
@click.option(
    "--file",
    "workflow_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run this Workflow YAML instead of rendering a pipeline.",
)
@set_option
@click.option(
    "--from",
    "source",
    metavar="KIND/NAME",
    help="Run what a spec's object starts, as `argo submit --from`: cronwf/NAME (one run of "
    "a schedule, now) or workflowtemplate/NAME.",
)
@click.option(
    "--image-map",
    "image_map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML map of image to entrypoint command list, for containers that give no command "
    "(default: ROOT/images.yaml when present).",
)
@root_option
@_friendly
def run_cmd(
    pipeline: str | None,
    spec_path: Path | None,
    workflow_file: Path | None,
    sets: tuple[str, ...],
    source: str | None,
    image_map: Path | None,
    root: Path,
) -> None:
    """Run a pipeline (or any Workflow YAML) on this machine, without a cluster.

    Executes the same Workflow `render` prints: DAGs, steps, retries, loops, exit handlers
    and the rest of the subset the README lists, with container steps as local processes and
    volumes as folders under --root. Secrets not created by the run are read from environment
    variables named like their keys. A container that gives no command runs its image's
    entrypoint from the image map (--image-map, or ROOT/images.yaml). Exits 0 only when the
    workflow Succeeded.
    """
    from workflows.local.runner import run_workflow

    if [pipeline is not None, workflow_file is not None, source is not None].count(True) != 1:
        raise LLMFlowError(
            "give a PIPELINE with -f SPEC, or --from cronwf/NAME with -f SPEC, or --file "
            "WORKFLOW.yaml"
        )
    overrides = _overrides(sets)
    phase = run_workflow(pipeline, spec_path, workflow_file, overrides, root, image_map, source)
    raise SystemExit(0 if phase == "Succeeded" else 1)


@main.command()
@click.argument("source")
@click.option(
    "--cache",
    "cache_root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache root folder.",
)
@click.option("--name", "model_name", required=True, help="Model name (cache sub-folder).")
@click.option(
    "--verify",
    type=click.Choice(["stat", "full"]),
    default="stat",
    show_default=True,
    help="How a cache hit is checked: file sizes and times, or every byte.",
)
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--chunk-mib", type=click.IntRange(1, 1024), default=8, show_default=True)
@_friendly
def fetch(
    source: str, cache_root: Path, model_name: str, verify: str, concurrency: int, chunk_mib: int
) -> None:
    """Fetch SOURCE (s3://bucket/prefix, hf://org/name@revision or file:///path) into a cache.

    The same code as the fetch-weights step: prints the cache path and the content digest.
    S3 settings come from the usual AWS variables (AWS_ENDPOINT_URL for S3-compatible stores);
    the Hugging Face Hub's from HF_TOKEN (private and gated models) and HF_ENDPOINT (a mirror).
    """
    from steps.weights.checksum import MiB
    from steps.weights.fetch import fetch_model

    result = fetch_model(
        source,
        cache_root,
        model_name,
        verify=verify,  # type: ignore[arg-type]
        concurrency=concurrency,
        chunk_size=chunk_mib * MiB,
    )
    click.echo(f"path: {result.path}")
    click.echo(f"digest: {result.digest}")
    what = "cache hit" if result.cache_hit else f"{result.downloaded_bytes / 1e6:.1f} MB fetched"
    click.echo(f"{what} in {result.seconds:.2f} s", err=True)


@main.command("tiny-model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Same seed, same weights and tokenizer, byte for byte.",
)
@_friendly
def tiny_model(out: Path, seed: int) -> None:
    """Create a tiny Llama-architecture model with its own tokenizer in OUT (no download)."""
    from steps.tiny_model import create_tiny_model

    click.echo(str(create_tiny_model(out, seed=seed)))


@main.command()
@click.option(
    "-f",
    "--spec",
    "spec_path",
    default=Path("releases/tiny.yaml"),
    show_default=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--workdir",
    default=Path(".llmflow/demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the model, the local S3 data and the cache go.",
)
@click.option(
    "--skip-images",
    is_flag=True,
    help="Release without building images (no buildah, no registry).",
)
@_friendly
def demo(spec_path: Path, workdir: Path, skip_images: bool) -> None:
    """Run the whole lifecycle locally on a tiny model, through the release pipeline.

    Creates the tiny model and serves it from a local S3 server (s3rver), validates and
    applies the WorkflowTemplates locally, serves the base model (deploy), then releases the
    fine-tuned model with the Python API on the local engine: fetch, build the images
    (buildah, a local registry), fine-tune (two replicas), evaluate and gate, canary, promote,
    record. It asks the gateway a question with the openai client, releases a bad candidate
    (served with --max-num-seqs 1) that is rolled back, and prints the record, the reports
    and the time taken. What it serves stays up (`llmflow local status`) until `llmflow
    local down`; `llmflow releases show tiny-llama` prints the production release.
    """
    from workflows.demo import run_demo

    run_demo(spec_path, workdir, images=not skip_images)


main.add_command(eval_group)
main.add_command(canary_group)
main.add_command(local_group)
main.add_command(runs_group)
main.add_command(cluster_group)
main.add_command(templates_group)
main.add_command(releases_group)
main.add_command(release_tag_group)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

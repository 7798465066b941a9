"""Options several commands share: where the Argo server is, and the local engine's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: The argo CLI's settings, from its environment variables, so an existing setup works as is.
_ARGO_SERVER = (
    click.option("--host", envvar="ARGO_SERVER", help="Argo server URL. Env: ARGO_SERVER."),
    click.option("--token", envvar="ARGO_TOKEN", help="Bearer token. Env: ARGO_TOKEN."),
    click.option(
        "-n",
        "--namespace",
        envvar="ARGO_NAMESPACE",
        help="Namespace (default: the spec's). Env: ARGO_NAMESPACE.",
    ),
    click.option(
        "--insecure",
        is_flag=True,
        default=None,
        help="Skip TLS verification. Env: ARGO_INSECURE_SKIP_VERIFY.",
    ),
)


def argo_server_options(func: F) -> F:
    """`--host`, `--token`, `-n/--namespace`, `--insecure` (see `submit.ArgoServer.from_env`)."""
    for option in reversed(_ARGO_SERVER):
        func = option(func)
    return func


def local_root_option(help_text: str) -> Callable[[F], F]:
    """`--root`: the local engine's folder (runs, volumes, templates, platform)."""
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".llmflow"),
        show_default=True,
        help=help_text,
    )

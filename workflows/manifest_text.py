"""Resource manifests as text: the form Argo fills in before the API server parses it.

A resource template's manifest is a string. Argo substitutes `{{...}}` into that text, then
kubectl parses it; so a value that must arrive as an integer (a replica count read from a
workflow parameter) is written unquoted, as an expression (`Raw`). Such text is not YAML until
it is filled in: `quote_placeholders` makes it parseable for the tools that read it before
(validation, RBAC derivation).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import yaml


class Raw(str):
    """A `{{...}}` value written unquoted in the manifest text: an integer once Argo fills it.

    Argo fills the manifest's text in before the API server parses it, so
    `numNodes: {{=asInt(workflow.parameters['train-replicas'])}}` arrives as `numNodes: 2`, an
    integer; quoted, it would arrive as the string "2", which the schema refuses. Only
    expressions (`{{=...}}`) may stand unquoted: Argo's validation parses the manifest with
    them replaced, and any other `{{...}}` would not parse.
    """


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, with every `Raw` value unquoted."""
    raws: dict[str, str] = {}
    counter = itertools.count()

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            token = f"llmflow-raw-{next(counter)}-end"  # -1-end is no prefix of -10-end
            raws[token] = str(value)
            return token
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = yaml.safe_dump(mark(manifest), sort_keys=False)
    for token, raw in raws.items():
        text = text.replace(token, raw)
    return text


#: A YAML value that is a whole unquoted `{{...}}` (after `key: ` or `- `).
_BARE_PLACEHOLDER = re.compile(r"^(\s*(?:- )*(?:[^\s:'\"#][^:#]*:\s+)?)(\{\{.*\}\})\s*$", re.M)


def quote_placeholders(manifest: str) -> str:
    """The manifest with bare `{{...}}` values quoted, so it parses before Argo fills them in.

    `numNodes: {{=asInt(workflow.parameters['train-replicas'])}}` (a `Raw` value) reads as a nested
    mapping in YAML; quoted, it reads as a string, which type checks skip as they skip every
    placeholder, while the manifest's structure is checked as it will be.
    """

    def quote(match: re.Match[str]) -> str:
        return match.group(1) + "'" + match.group(2).replace("'", "''") + "'"

    return _BARE_PLACEHOLDER.sub(quote, manifest)

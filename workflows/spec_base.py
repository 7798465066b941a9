"""The building blocks of release spec sections: strict sections and the value checks they share."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_URI = re.compile(r"^(s3://[a-z0-9][a-z0-9.\-]+/.+|file:///.+)$")


class Section(BaseModel):
    """Base of every spec section: unknown fields are errors, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def uri(value: str) -> str:
    """A URI steps read and write: `s3://bucket/path` or `file:///absolute/path`."""
    if not _URI.match(value):
        raise ValueError("must be s3://bucket/path or file:///absolute/path")
    return value.rstrip("/")


def dns_label(value: str, what: str) -> str:
    """`value` if it is a Kubernetes name (a DNS label); else a ValueError naming `what`."""
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{what} must be a Kubernetes name: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_s(value: str) -> float:
    """Seconds in an Argo duration: whole seconds (`30`) or Go's form (`10s`, `2m`, `1m30s`)."""
    if value.isdigit():
        return float(value)
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError("must be a duration such as 10s, 2m or 1m30s")
    return sum(float(n) * _DURATION_UNIT_S[u] for n, u in parts)

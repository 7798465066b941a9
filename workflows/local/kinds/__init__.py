"""Kinds the LocalPlatform runs as processes; importing this package registers them."""

from workflows.local.kinds import (  # noqa: F401
    deployment,
    gateway,
    policies,
    prometheus,
    pytorchjob,
    service,
    trainjob,
)

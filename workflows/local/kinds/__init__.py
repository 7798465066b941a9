"""Kinds the LocalPlatform runs as processes; importing this package registers them."""

from workflows.local.kinds import pytorchjob  # noqa: F401

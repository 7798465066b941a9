"""Serving: manifests and analysis for vLLM deployments (not yet provided by this release)."""

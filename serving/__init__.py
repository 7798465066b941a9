"""Serving: the canary judge today; vLLM manifests, the probe and the deploy pipeline to come."""

"""Fetching model weights from a source into a verified, content-addressed local cache."""

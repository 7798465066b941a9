"""llmflow: Argo Workflows pipelines, defined with Hera, for the lifecycle of self-hosted LLMs."""

__version__ = "0.1.0"

"""Running llmflow on one machine with no cluster: local stand-ins for cluster services."""

"""Code that llmflow's pipeline steps run inside their containers (or as local processes)."""

"""Make a saved checkpoint loadable by every stack: transformers 4 and 5, vLLM, lm-eval.

transformers 5 writes a few things older or other readers trip over: a tokenizer class
named `TokenizersBackend`, a `backend` key, rope settings only under `rope_parameters`, and
safetensors files readable by their owner only. This rewrites them in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def make_portable(folder: Path) -> None:
    """Rewrite a saved model folder's configs and permissions for other readers."""
    tok_path = folder / "tokenizer_config.json"
    if tok_path.exists():
        tok = json.loads(tok_path.read_text())
        tok.pop("backend", None)
        tok["tokenizer_class"] = "PreTrainedTokenizerFast"
        tok["model_input_names"] = ["input_ids", "attention_mask"]
        tok_path.write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n")
    config_path = folder / "config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
        config.pop("transformers_version", None)
        if "dtype" in config:
            config["torch_dtype"] = config.pop("dtype")
        rope = config.get("rope_parameters") or {}
        if "rope_theta" not in config and "rope_theta" in rope:
            config["rope_theta"] = rope["rope_theta"]
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    gen_path = folder / "generation_config.json"
    if gen_path.exists():
        gen = json.loads(gen_path.read_text())
        gen.pop("transformers_version", None)
        gen_path.write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    for path in folder.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o644)

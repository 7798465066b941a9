"""The tiny model: made here, deterministic, loadable and portable."""

import hashlib
import json
from pathlib import Path

import pytest

from steps.tiny_model import create_tiny_model


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model: Path, tmp_path: Path) -> None:
    again = create_tiny_model(tmp_path / "again", seed=0)
    assert digests(again) == digests(tiny_model)
    other = create_tiny_model(tmp_path / "other", seed=1)
    assert digests(other)["model.safetensors"] != digests(tiny_model)["model.safetensors"]
    assert digests(other)["tokenizer.json"] == digests(tiny_model)["tokenizer.json"]


def test_files_are_portable(tiny_model: Path) -> None:
    names = {p.name for p in tiny_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert all(oct(p.stat().st_mode)[-3:] == "644" for p in tiny_model.iterdir())
    tok = json.loads((tiny_model / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tok["model_input_names"] == ["input_ids", "attention_mask"]
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["torch_dtype"] == "float32" and "rope_theta" in config


def test_loads_and_generates_with_transformers(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert type(model).__name__ == "LlamaForCausalLM"
    batch = tokenizer(["Question: What is two plus two?"], return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == tokenizer.bos_token_id
    assert tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == (
        "Question: What is two plus two?"
    )
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, batch["input_ids"].shape[1] + 5)


@pytest.mark.parametrize("text", ["hello world", "Kubernetes runs pods. 123"])
def test_tokenizer_round_trips(tiny_model: Path, text: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text

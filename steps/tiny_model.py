"""A tiny Llama-architecture model, made here from a seed: the demo's and the tests' model.

Nothing is downloaded. The tokenizer is a byte-level BPE trained on a small built-in corpus,
the weights are random for the seed, and everything is written so that transformers 4 and 5,
vLLM and lm-eval all load it: safetensors readable by everyone (0644), a tokenizer config
naming `PreTrainedTokenizerFast`, and a config.json without version-specific spellings.

    llmflow tiny-model /tmp/tiny        # or: create_tiny_model(Path("/tmp/tiny"), seed=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steps.portable import make_portable

#: Shape of the model: head size 64 is one every vLLM CPU attention kernel supports.
CONFIG: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]

#: Training text for the tokenizer: short, plain sentences about the domain the demo data uses.
_CORPUS = """\
The quick brown fox jumps over the lazy dog.
A model is trained on data and evaluated on held out examples.
Question: What is the capital of France? Answer: Paris.
Question: What is two plus two? Answer: four.
Kubernetes runs containers in pods, and Argo runs workflows of pods.
Weights are cached on the node so that serving starts fast.
The canary receives ten percent of traffic before it is promoted.
Instruction: Repeat the word hello. Response: hello
Instruction: Name a colour. Response: blue
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20.
abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'"()[]{}<>-_=+*/\\|@#$%^&~`
"""


def train_tokenizer(vocab_size: int = CONFIG["vocab_size"]) -> Any:
    """A byte-level BPE tokenizer trained on the built-in corpus (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tokenizer


def create_tiny_model(out: Path, seed: int = 0) -> Path:
    """Write a tiny Llama model and its tokenizer into `out`; returns `out`.

    The same seed gives the same files, byte for byte.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = train_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=CONFIG["max_position_embeddings"],
    )
    tokenizer.save_pretrained(out)

    ids = {t: raw.token_to_id(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        **CONFIG, bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"]
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(out, safe_serialization=True)
    make_portable(out)
    return out

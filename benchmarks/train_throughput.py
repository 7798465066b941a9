"""Benchmark: training tokens/s of steps/train.py against a plain transformers `Trainer`.

Same model, same tokenised examples, same batch size and steps, in the same run, after an
untimed warm-up; prints tokens/s for each and the ratio. On a GPU it also prints MFU
(6 x parameters x tokens/s over the chip's dense bf16 peak).

    .venv/bin/python benchmarks/train_throughput.py                 # the tiny model, CPU
    python3 benchmarks/train_throughput.py --size 0.5b --seq 1024   # ~0.5B Llama, bf16, GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Dense bf16 peak of the chips we report MFU for (vendor datasheets), FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}

SIZES = {  # randomly initialised Llamas; vocab 32000 so the LM head costs what it would
    "0.5b": dict(
        hidden_size=1536,
        intermediate_size=4096,
        num_hidden_layers=16,
        num_attention_heads=12,
        num_key_value_heads=4,
        head_dim=128,
        vocab_size=32000,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=18,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=128,
        vocab_size=32000,
    ),
}


def make_model(folder: Path, size: str) -> Path:
    """The tiny model, or a random Llama of the given size with the tiny tokenizer."""
    from steps.tiny_model import create_tiny_model

    create_tiny_model(folder)
    if size == "tiny":
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    base = json.loads((folder / "config.json").read_text())
    config = LlamaConfig(**{**base, **SIZES[size], "max_position_embeddings": 4096})
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def make_data(path: Path, examples: int, seq: int) -> None:
    """Examples of about `seq` tokens each; the whole text is the response (all of it trains)."""
    from steps.tiny_model import _CORPUS

    text = " ".join(_CORPUS.split()) + " "
    body = (text * (4 * seq // len(text) + 1))[: 4 * seq]  # ~3-4 characters a token
    with open(path, "w") as f:
        for i in range(examples):
            f.write(json.dumps({"prompt": f"{i}", "response": " " + body}) + "\n")


def run_recipe(model: Path, data: Path, args: argparse.Namespace, dtype: str) -> tuple[float, int]:
    """steps/train.py's recipe: (tokens/s, parameters)."""
    from steps.train import Recipe, TrainConfig

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            model=str(model),
            data=str(data),
            output=f"file://{out}",
            epochs=1,
            batch_size=args.batch,
            max_length=args.seq,
            checkpoint_every=0,
            dtype=dtype,
            progress=False,
        )
        recipe = Recipe(config)
        recipe.setup()
        recipe.train()
        params = sum(p.numel() for p in recipe.model.parameters())
        return recipe.summary.tokens_per_second, params


def run_trainer(model: Path, data: Path, args: argparse.Namespace, dtype: str) -> float:
    """The baseline: transformers' Trainer on the same tokenised examples and batches."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from steps.train import Recipe, TrainConfig

    config = TrainConfig(
        model=str(model), data=str(data), output="file:///unused", max_length=args.seq, dtype=dtype
    )
    tokenise = Recipe(config)
    from transformers import AutoTokenizer

    tokenise.tokenizer = AutoTokenizer.from_pretrained(model)
    examples = tokenise._load_data()
    pad = tokenise.tokenizer.pad_token_id

    def collate(rows: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
        width = max(len(r[0]) for r in rows)
        return {
            "input_ids": torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows]),
            "labels": torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows]),
            "attention_mask": torch.tensor(
                [[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows]
            ),
        }

    net = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype))
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch,
            num_train_epochs=1,
            learning_rate=1e-3,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            seed=0,
            bf16=dtype == "bfloat16",
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
        )
        trainer = Trainer(model=net, args=training, train_dataset=examples, data_collator=collate)
        started = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - started
    tokens = sum(len(e[0]) for e in examples)
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", *SIZES], default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    dtype = "bfloat16" if cuda else "float32"
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "model", args.size)
        data = Path(tmp) / "data.jsonl"
        make_data(data, args.steps * args.batch, args.seq)
        # Untimed warm-up, so neither timed run pays for first-use costs (CUDA context,
        # kernel loading, allocator growth) that the other then gets for free.
        warmup = Path(tmp) / "warmup.jsonl"
        make_data(warmup, 3 * args.batch, args.seq)
        run_trainer(model, warmup, args, dtype)
        ours, params = run_recipe(model, data, args, dtype)
        if cuda:
            torch.cuda.empty_cache()
        baseline = run_trainer(model, data, args, dtype)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(
        f"model: {args.size} ({params / 1e6:.1f} M parameters), {dtype}, batch {args.batch} "
        f"x {args.seq} tokens, {args.steps} steps, {device}"
    )
    print(f"steps/train.py        {ours:12,.0f} tokens/s")
    print(f"transformers Trainer  {baseline:12,.0f} tokens/s")
    print(f"ratio steps/train.py / Trainer: {ours / baseline:.2f}x")
    if cuda:
        peak = next((v for k, v in PEAK_BF16.items() if k in device), None)
        if peak:
            for name, rate in (("steps/train.py", ours), ("Trainer", baseline)):
                print(f"MFU {name}: {6 * params * rate / peak:.1%} (of {peak / 1e12:.0f} TFLOP/s)")


if __name__ == "__main__":
    main()

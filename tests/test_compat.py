"""Checkpoints llmflow writes load in transformers 4 too (5 is what the project runs).

`make test` builds `.venv/compat-tf4` with transformers 4; this test loads the tiny model
and fine-tuned checkpoints (full and LoRA-merged) there and generates.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from steps.tiny_data import DATASET
from steps.train import main as train

ROOT = Path(__file__).resolve().parents[1]
COMPAT = Path(sys.prefix) / "compat-tf4" / "bin" / "python"

LOAD = """
import sys, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
assert transformers.__version__.startswith("4."), transformers.__version__
for folder in sys.argv[1:]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    batch = tokenizer("Question: What is 1 plus 2?\\nAnswer:", return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3
    print("ok", type(model).__name__, type(tokenizer).__name__)
"""


def test_checkpoints_load_in_transformers_4(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    if not COMPAT.exists():
        pytest.fail(f"{COMPAT} missing: `make setup` builds the transformers 4 environment")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = str(DATASET / "train.jsonl")
    folders = [str(tiny_model)]
    for method in ("full", "lora"):
        out = tmp_path / method
        train(
            [
                "--model",
                str(tiny_model),
                "--data",
                data,
                "--output",
                f"file://{out}",
                "--method",
                method,
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        folders.append(str(out / "final"))
    result = subprocess.run(
        [str(COMPAT), "-c", LOAD, *folders], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok LlamaForCausalLM PreTrainedTokenizerFast") == 3

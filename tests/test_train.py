"""The training recipe on the tiny model: it learns, resumes exactly, merges LoRA, runs in DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.tiny_data import DATASET
from steps.train import main

DATA = str(DATASET / "train.jsonl")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def train(tmp_path: Path, model: Path, *extra: str) -> dict:
    out = tmp_path / "out"
    main(
        [
            "--model",
            str(model),
            "--data",
            DATA,
            "--output",
            f"file://{out}",
            "--no-progress",
            *extra,
        ]
    )
    return json.loads((out / "summary.json").read_text())


def test_full_fine_tune_learns_and_saves_a_loadable_model(tmp_path: Path, tiny_model: Path) -> None:
    summary = train(tmp_path, tiny_model, "--epochs", "4")
    losses = summary["losses"]
    assert summary["steps"] == len(losses) == 40 and summary["world_size"] == 1
    assert losses[-1] < 0.6 * losses[0]
    assert summary["tokens_per_second"] > 0 and summary["resumed_from_step"] == 0
    final = tmp_path / "out" / "final"
    assert summary["checkpoint"] == f"file://{final}"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    batch = tokenizer("Question: What is 2 plus 3?\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3
    config = json.loads((final / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert oct((final / "model.safetensors").stat().st_mode)[-3:] == "644"


def test_resume_continues_from_the_last_checkpoint_exactly(
    tmp_path: Path, tiny_model: Path
) -> None:
    first = train(tmp_path, tiny_model, "--epochs", "3", "--checkpoint-every", "10")
    checkpoints = tmp_path / "out" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "20"
    (tmp_path / "out" / "summary.json").unlink()
    again = train(tmp_path, tiny_model, "--epochs", "3", "--checkpoint-every", "10")
    assert again["resumed_from_step"] == 20
    assert again["steps"] == 30 and len(again["losses"]) == 30
    assert again["final_loss"] == pytest.approx(first["final_loss"], rel=1e-4)


def test_lora_is_merged_on_save(tmp_path: Path, tiny_model: Path) -> None:
    summary = train(
        tmp_path, tiny_model, "--method", "lora", "--epochs", "2", "--learning-rate", "0.01"
    )
    final = tmp_path / "out" / "final"
    assert not list(final.glob("adapter_*")), "adapters must be merged into the weights"
    from safetensors.torch import load_file

    merged = load_file(final / "model.safetensors")
    base = load_file(tiny_model / "model.safetensors")
    assert set(merged) == set(base)
    changed = [k for k in base if not (merged[k] == base[k]).all()]
    assert changed and all("proj" in k for k in changed)
    assert summary["losses"][-1] < summary["losses"][0]


def test_two_processes_under_torchrun(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "ddp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "steps.train",
            "--model",
            str(tiny_model),
            "--data",
            DATA,
            "--output",
            f"file://{out}",
            "--epochs",
            "4",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 20
    assert summary["losses"][-1] < 0.7 * summary["losses"][0]


def test_settings_typed_in_the_ui_are_checked_with_the_specs_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values that bypass spec validation (the Argo UI form) get the spec's wording."""
    from workflows.exceptions import SpecError
    from workflows.spec import parse_spec

    bad = {"method": "qlora", "epochs": "0", "learning-rate": "-1", "lora-rank": "x"}
    flags = [arg for name, value in bad.items() for arg in (f"--{name}", value)]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path), "--data", DATA, "--output", out.as_uri(), *flags])
    assert exit_info.value.code == 2
    said = capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
    spec_data = {
        "model": {"name": "m", "source": "s3://b/m"},
        "finetune": {
            "dataset": "s3://b/d.jsonl",
            "output": "s3://b/o",
            "method": "qlora",
            "epochs": 0,
            "learning_rate": -1,
        },
    }
    with pytest.raises(SpecError) as spec_error:
        parse_spec(spec_data)
    for parameter, field in (
        ("method", "finetune.method"),
        ("epochs", "finetune.epochs"),
        ("learning-rate", "finetune.learning_rate"),
    ):
        line = next(
            x for x in said.splitlines() if x.startswith(f"workflow parameter {parameter} ")
        )
        assert field in line
        rule = line.split("): ", 1)[1]
        spec_line = next(x for x in str(spec_error.value).splitlines() if f"{field} =" in x)
        assert spec_line.endswith(rule)  # the same rule, in the same words
    assert "workflow parameter lora-rank = 'x' (finetune.lora.rank in the release spec)" in said


def test_bad_method_is_refused(tiny_model: Path) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "--model",
                str(tiny_model),
                "--data",
                DATA,
                "--output",
                "file:///tmp/x",
                "--method",
                "qlora",
            ]
        )

"""Fine-tune a causal language model: the program every PyTorchJob replica runs.

One process:
    python -m steps.train --model /models/tiny --data train.jsonl --output s3://b/runs/r1
Two processes on this machine (DDP over gloo; nccl on GPUs):
    torchrun --nproc-per-node 2 -m steps.train --model ... --data ... --output ...
In a PyTorchJob the operator sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR and PET_MASTER_PORT, which `torchrun -m steps.train ...` reads.

Lifecycle: setup -> train -> save -> cleanup. Rank and world come from RANK / LOCAL_RANK /
WORLD_SIZE; side effects (checkpoints, the final model, the summary) happen on rank 0 only.
Every `--checkpoint-every` steps rank 0 writes model, optimizer and step to
`<output>/checkpoints/`, and a restarted replica resumes from the latest one instead of step
0. The end product is `<output>/final/` (merged weights as safetensors, tokenizer, configs
readable by transformers 4 and 5 and vLLM) and `<output>/summary.json`, written last.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from steps import storage
from steps.train_knobs import KnobError, TrainKnobs, check_knobs

log = logging.getLogger("steps.train")


@dataclass
class TrainConfig:
    """What to train, on what, and how.

    Attributes:
        model: Folder of the base model (a weights cache entry).
        data: JSONL of {"prompt", "response"} rows: a path, file:// or s3:// URI.
        output: URI that receives checkpoints, the final model and summary.json.
        method: `full` fine-tuning, or `lora` (adapters merged into the weights on save).
        epochs: Passes over the data.
        learning_rate: AdamW learning rate.
        batch_size: Examples per step on each process.
        max_length: Longest tokenised example kept.
        lora_rank: LoRA rank (method lora).
        lora_alpha: LoRA scaling (method lora).
        checkpoint_every: Steps between checkpoints; 0 saves only at the end.
        seed: Seed for initialisation and data order; the same seed gives the same run.
        dtype: `float32`, or `bfloat16` for GPUs.
        progress: Show a progress bar on rank 0.
    """

    model: str
    data: str
    output: str
    method: str = "full"
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 128
    lora_rank: int = 8
    lora_alpha: int = 16
    checkpoint_every: int = 10
    seed: int = 0
    dtype: str = "float32"
    progress: bool = True


@dataclass
class Summary:
    """What a training run did; written to `<output>/summary.json`."""

    steps: int = 0
    epochs: int = 0
    world_size: int = 1
    method: str = "full"
    resumed_from_step: int = 0
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    checkpoint: str = ""


class Recipe:
    """One training run on one process; `main` drives its lifecycle."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.summary = Summary(world_size=self.world, method=config.method)
        self.step = 0
        self._pending: list[Any] = []

    # --- setup --------------------------------------------------------------------------

    def setup(self) -> None:
        """Process group, model, optimizer, data, and the latest checkpoint if there is one."""
        import torch

        cfg = self.config
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=timedelta(minutes=10))
        self.device = torch.device(
            f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        )
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer = self._load_model()
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"  # one kernel per step instead of one per tensor
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, fused=fused)
        self.examples = self._load_data()
        self.steps_per_epoch = math.ceil(len(self._shard(0)) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self._resume()
        self.ddp: Any = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.local_rank] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    def _load_model(self) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        dtype = getattr(torch, cfg.dtype)
        model: Any = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        model = model.to(self.device)
        if cfg.method == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lora)
        model.train()
        return model, tokenizer

    def _load_data(self) -> list[tuple[list[int], list[int]]]:
        """Tokenised (input ids, labels); prompt tokens are masked out of the loss."""
        cfg = self.config
        if "://" in cfg.data:
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / "data.jsonl"
                storage.download(cfg.data, local)
                lines = local.read_text().splitlines()
        else:
            lines = Path(cfg.data).read_text().splitlines()
        tok = self.tokenizer
        examples = []
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            prompt = tok(row["prompt"])["input_ids"]
            full = tok(row["prompt"] + row["response"])["input_ids"] + [tok.eos_token_id]
            full = full[: cfg.max_length]
            labels = [-100] * min(len(prompt), len(full)) + full[len(prompt) :]
            examples.append((full, labels))
        if not examples:
            raise ValueError(f"--data {cfg.data}: no examples")
        return examples

    def _shard(self, epoch: int) -> list[int]:
        """This process's example indices for an epoch (a seeded shuffle, strided by rank)."""
        order = list(range(len(self.examples)))
        random.Random(self.config.seed * 1000 + epoch).shuffle(order)
        usable = len(order) - len(order) % self.world if len(order) >= self.world else len(order)
        return order[:usable][self.rank :: self.world]

    def _resume(self) -> None:
        import torch

        latest = storage.read_text(storage.join(self.config.output, "checkpoints", "latest"))
        if not latest:
            return
        step = int(latest.strip())
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "checkpoint.pt"
            storage.download(
                storage.join(self.config.output, "checkpoints", f"step-{step}.pt"), local
            )
            state = torch.load(local, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = self.summary.resumed_from_step = step
        self.summary.losses = list(state.get("losses", []))
        if self.rank == 0:
            log.info("resuming from step %d of %d", step, self.total_steps)

    # --- train --------------------------------------------------------------------------

    def train(self) -> None:
        """Run the remaining steps, checkpointing as configured.

        Losses stay on the device and are gathered across ranks only when they are needed
        (a log line, a checkpoint, the end), so the GPU never waits on the host each step.
        """
        cfg = self.config
        started, tokens = time.monotonic(), 0
        bar = _Progress(self.total_steps, self.step, enabled=cfg.progress and self.rank == 0)
        with bar:
            while self.step < self.total_steps:
                epoch, index = divmod(self.step, self.steps_per_epoch)
                shard = self._shard(epoch)
                batch_ids = shard[index * cfg.batch_size : (index + 1) * cfg.batch_size]
                inputs, labels, mask, count = self._collate(batch_ids)
                loss = self.ddp(input_ids=inputs, attention_mask=mask, labels=labels).loss
                loss.backward()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self._pending.append(loss.detach())
                tokens += count
                self.step += 1
                if bar.wants(self.step):
                    self._flush_losses()
                    rate = tokens * self.world / max(time.monotonic() - started, 1e-9)
                    bar.update(self.step, self.summary.losses[-1], rate)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    if self.step < self.total_steps:
                        self._checkpoint()
        self._flush_losses()
        seconds = time.monotonic() - started
        tokens = self._sum(tokens)
        self.summary.steps, self.summary.epochs = self.step, cfg.epochs
        self.summary.tokens, self.summary.seconds = tokens, round(seconds, 3)
        self.summary.tokens_per_second = round(tokens / seconds, 1) if seconds else 0.0
        self.summary.final_loss = self.summary.losses[-1] if self.summary.losses else float("nan")

    def _flush_losses(self) -> None:
        """Move the losses of the steps since the last flush to the summary (mean over ranks)."""
        if not self._pending:
            return
        import torch

        values = torch.stack(self._pending).float()
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(values)
            values = values / self.world
        self.summary.losses.extend(round(v, 6) for v in values.tolist())
        self._pending = []

    def _collate(self, ids: list[int]) -> tuple[Any, Any, Any, int]:
        """Padded input ids, labels and attention mask on the device, and the token count."""
        import torch

        rows = [self.examples[i] for i in ids]
        width = max(len(r[0]) for r in rows)
        pad = self.tokenizer.pad_token_id
        inputs = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows])
        labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
        mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
        count = sum(len(r[0]) for r in rows)
        device = self.device
        return inputs.to(device), labels.to(device), mask.to(device), count

    def _sum(self, count: int) -> int:
        if self.world == 1:
            return count
        import torch
        import torch.distributed as dist

        total = torch.tensor([count], device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def _checkpoint(self) -> None:
        """Rank 0 writes model, optimizer and step; `latest` is updated last."""
        import torch

        self._flush_losses()
        if self.rank == 0:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "losses": self.summary.losses,
            }
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "checkpoint.pt"
                torch.save(state, path)
                base = storage.join(self.config.output, "checkpoints")
                storage.upload(path, storage.join(base, f"step-{self.step}.pt"))
                storage.write_text(storage.join(base, "latest"), f"{self.step}\n")
        self._barrier()

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # --- save and cleanup ---------------------------------------------------------------

    def save(self) -> None:
        """Rank 0 writes the final (merged) model, then the summary that registers it."""
        if self.rank == 0:
            from steps.portable import make_portable

            model = self.model.merge_and_unload() if self.config.method == "lora" else self.model
            final = storage.join(self.config.output, "final")
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "final"
                model.save_pretrained(folder, safe_serialization=True)
                self.tokenizer.save_pretrained(folder)
                make_portable(folder)
                storage.upload_folder(folder, final)
            self.summary.checkpoint = final
            summary = json.dumps(asdict(self.summary), indent=1)
            storage.write_text(storage.join(self.config.output, "summary.json"), summary)
            log.info(
                "final loss %.4f after %d steps; model at %s",
                self.summary.final_loss,
                self.summary.steps,
                final,
            )
        self._barrier()

    def cleanup(self) -> None:
        """Leave the process group."""
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


class _Progress:
    """A rich bar on a terminal; a log line every 10 steps elsewhere."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            console = Console(stderr=True)
            if console.is_terminal:
                self._bar = Progress(
                    TextColumn("train"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    console=console,
                )
                self._task = self._bar.add_task("train", total=total, completed=done, info="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def wants(self, step: int) -> bool:
        """Whether this step is shown (every step on a terminal, every 10th in a log)."""
        if not self.enabled:
            return False
        return self._bar is not None or step % 10 == 0 or step == self.total

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        info = f"loss {loss:.4f}  {tokens_per_s:,.0f} tok/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif step % 10 == 0 or step == self.total:
            log.info("step %d/%d %s", step, self.total, info)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command-line flags (kebab-case) to a TrainConfig.

    The knobs a run may change (`steps.train_knobs`) arrive as text typed into the Argo UI,
    so they are checked against the release spec's rules here, before anything starts.
    """
    parser = argparse.ArgumentParser(
        prog="python -m steps.train", description=__doc__.splitlines()[0]
    )
    defaults = TrainConfig(model="", data="", output="")
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if name in {"model", "data", "output"}:
            parser.add_argument(flag, required=True)
        elif name in TrainKnobs.model_fields:
            parser.add_argument(flag, default=str(value))
        elif isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    try:
        knobs = check_knobs({name: args.pop(name) for name in TrainKnobs.model_fields})
    except KnobError as exc:
        parser.error(f"invalid training settings:\n{exc}")
    return TrainConfig(**args, **knobs.model_dump())


def main(argv: list[str] | None = None) -> Summary:
    """Train with the given flags; returns the summary (rank 0's is the one written)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    recipe = Recipe(parse_args(argv))
    recipe.setup()
    recipe.train()
    recipe.save()
    recipe.cleanup()
    return recipe.summary


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    # `record` writes the error where torchrun's failure report quotes it as the root cause.
    record(main)()

r"""Probe sets: the prompts a canary probe sends to both versions, with the answers expected.

A probe set is `serving/probes/<name>.jsonl`, one prompt per line:

    {"prompt_id": "tiny-017", "prompt": "Question: What is 2 plus 3?\nAnswer:", "reference": " 5"}

Prompt lengths are spread on purpose (time to first token grows with prompt length, and the
judge compares the arms within length strata), and every prompt has a reference answer so that
answer quality is compared as well as latency. The `tiny` set is built from the tiny
instruction pairs, each behind 0 to 16 earlier question/answer pairs as context; regenerate it
(same bytes) with

    python -m serving.probe_sets
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from workflows.exceptions import LLMFlowError

#: Where probe sets live.
PROBES = Path(__file__).parent / "probes"

#: Earlier pairs put before a prompt, cycled over the set: about 12 to 370 prompt tokens, so
#: that a prompt and 16 generated tokens fit the tiny model's 512-token context (24 pairs
#: reached 508). Context costs the fine-tuned tiny model accuracy (0.64 without context, 0.3
#: behind one pair, 0.1 behind 16: it was trained on single pairs), so two in five prompts
#: have none, which keeps answer quality telling a fine-tuned model from the base one.
CONTEXT_SHOTS = (0, 0, 2, 6, 16)


class ProbeSetError(LLMFlowError):
    """A probe set that does not exist or cannot be read; the message names it and the fix."""


@dataclass(frozen=True)
class ProbePrompt:
    """One prompt of a probe set and the answer a good model gives."""

    prompt_id: str
    prompt: str
    reference: str


def known_probe_sets() -> list[str]:
    """Names of the probe sets under serving/probes/."""
    return sorted(p.stem for p in PROBES.glob("*.jsonl"))


def probe_set_path(name: str) -> Path:
    """The file of a probe set.

    Raises:
        ProbeSetError: no such set; the message lists the known ones.
    """
    path = PROBES / f"{name}.jsonl"
    if "/" in name or not path.is_file():
        known = ", ".join(known_probe_sets()) or "none"
        raise ProbeSetError(
            f"no probe set {name!r}: add serving/probes/{name}.jsonl (prompt_id, prompt, "
            f"reference per line) or use one of: {known}"
        )
    return path


def load_probe_set(name_or_path: str | Path) -> list[ProbePrompt]:
    """The prompts of a probe set, by name (`tiny`) or as a path to a JSONL file.

    Raises:
        ProbeSetError: the set is missing, or a line lacks a field; the message says which.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = probe_set_path(str(name_or_path))
    prompts: list[ProbePrompt] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProbeSetError(f"cannot read probe set {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompts.append(ProbePrompt(str(row["prompt_id"]), row["prompt"], row["reference"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProbeSetError(
                f"{path}:{number}: each line must be a JSON object with prompt_id, prompt and "
                f"reference ({exc})"
            ) from None
    if not prompts:
        raise ProbeSetError(f"probe set {path} is empty: add at least one prompt")
    return prompts


def build_tiny(seed: int = 0) -> list[ProbePrompt]:
    """The `tiny` probe set: every tiny training pair, behind 0-16 other pairs as context."""
    from steps.tiny_data import generate

    train, _ = generate()
    rng = random.Random(seed)
    prompts = []
    for i, row in enumerate(train):
        shots = CONTEXT_SHOTS[i % len(CONTEXT_SHOTS)]
        others = [r for r in train if r is not row]
        context = "".join(f"{r['prompt']}{r['response']}\n" for r in rng.sample(others, shots))
        prompts.append(ProbePrompt(f"tiny-{i:03d}", context + row["prompt"], row["response"]))
    return prompts


def write(prompts: list[ProbePrompt], path: Path) -> None:
    """Write a probe set as JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = (
        json.dumps({"prompt_id": p.prompt_id, "prompt": p.prompt, "reference": p.reference})
        for p in prompts
    )
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - regeneration entry point
    write(build_tiny(), Path(sys.argv[1]) if len(sys.argv) > 1 else PROBES / "tiny.jsonl")

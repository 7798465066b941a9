"""The `tiny_instructions` eval data: the tiny instruction pairs as scored items with distractors.

Every prompt of the tiny instruction dataset (`steps/data/tiny_instructions/`, train and test)
becomes one item: the prompt, its one right response, and three wrong responses of the same
kind (other sums, other number words, other colours, the same word repeated a wrong number of
times or another word repeated as often). Same-kind distractors are what make the task
measure learning: a random model cannot tell them apart by form (near chance), a model that
learnt the pairs can.

Training prompts are included on purpose: the tiny model is too small to generalise from 80
pairs, so the suite measures whether fine-tuning took (each item says which split it came
from in `source`), not held-out skill. Regenerate the committed file (same bytes) with

    python -m evals.tiny_data
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from steps.tiny_data import DATASET

#: Where the committed items live (read by `evals/tasks/tiny_instructions/*.yaml`).
OUTPUT = Path(__file__).parent / "data" / "tiny_instructions" / "test.jsonl"

#: The kinds of prompt the dataset has; distractors are drawn from responses of the same kind.
KINDS = {
    "sum": re.compile(r"^Question: What is \d+ plus \d+\?"),
    "word": re.compile(r"^Question: Write \d+ as a word\."),
    "colour": re.compile(r"^Question: What colour is the \w+\?"),
    "repeat": re.compile(r"^Instruction: Repeat the word \w+ \d+ times\."),
}

#: Wrong responses per item: four choices, so chance is 25%.
DISTRACTORS = 3


def _kind(prompt: str) -> str:
    for kind, pattern in KINDS.items():
        if pattern.match(prompt):
            return kind
    raise ValueError(
        f"prompt {prompt!r} matches no kind in evals.tiny_data.KINDS; "
        "add a pattern for it so its distractors can be drawn"
    )


def _candidates(kind: str, response: str, pool: list[str]) -> list[str]:
    """Wrong responses of the same kind; for repeats, ones sharing the word or the count."""
    others = [r for r in pool if r != response]
    if kind != "repeat":
        return others
    words = response.split()
    return [r for r in others if r.split()[0] == words[0] or len(r.split()) == len(words)]


def items(seed: int = 0) -> list[dict[str, object]]:
    """The scored items, in a seeded order; the same seed gives the same items."""
    rows = []
    for split in ("train", "test"):
        for line in (DATASET / f"{split}.jsonl").read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "source": split})
    pools: dict[str, list[str]] = {}
    for row in rows:
        pools.setdefault(_kind(row["prompt"]), [])
        if row["response"] not in pools[_kind(row["prompt"])]:
            pools[_kind(row["prompt"])].append(row["response"])
    rng = random.Random(seed)
    rng.shuffle(rows)
    out: list[dict[str, object]] = []
    for index, row in enumerate(rows):
        kind = _kind(row["prompt"])
        wrong = sorted(_candidates(kind, row["response"], pools[kind]))
        if len(wrong) < DISTRACTORS:
            raise ValueError(f"prompt {row['prompt']!r}: only {len(wrong)} distractors")
        choices = [row["response"], *rng.sample(wrong, DISTRACTORS)]
        rng.shuffle(choices)
        out.append(
            {
                "id": f"tiny-{index:03d}",
                "kind": kind,
                "source": row["source"],
                "prompt": row["prompt"],
                "response": row["response"],
                "choices": choices,
                "answer": choices.index(row["response"]),
            }
        )
    return out


def write(path: Path = OUTPUT, seed: int = 0) -> None:
    """Write the items as JSONL (sorted keys, one item a line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, sort_keys=True) + "\n" for item in items(seed)))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT)

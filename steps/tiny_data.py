"""The tiny instruction dataset: short prompt/response pairs a tiny model can learn in minutes.

Generated from templates with a fixed seed, split into train and test, and committed as JSONL
(`steps/data/tiny_instructions/{train,test}.jsonl`) so fine-tuning and evaluation read the
same bytes everywhere. Every pair has one right answer, so evaluation can measure accuracy.

    python -m steps.tiny_data steps/data/tiny_instructions   # regenerate (same bytes)
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WORDS = ["hello", "model", "data", "pod", "cache", "canary", "traffic", "weights", "node", "blue"]
COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "sun": "yellow"}


def _pairs(rng: random.Random) -> list[dict[str, str]]:
    pairs = []
    for a in range(10):
        for b in range(10):
            if a + b < 10:
                pairs.append(
                    {"prompt": f"Question: What is {a} plus {b}?\nAnswer:", "response": f" {a + b}"}
                )
    for n, word in enumerate(NUMBERS):
        pairs.append({"prompt": f"Question: Write {n} as a word.\nAnswer:", "response": f" {word}"})
    for word in WORDS:
        for times in (1, 2, 3):
            prompt = f"Instruction: Repeat the word {word} {times} times.\nResponse:"
            pairs.append({"prompt": prompt, "response": " " + " ".join([word] * times)})
    for thing, colour in COLOURS.items():
        pairs.append(
            {"prompt": f"Question: What colour is the {thing}?\nAnswer:", "response": f" {colour}"}
        )
    rng.shuffle(pairs)
    return pairs


Rows = list[dict[str, str]]


def generate(seed: int = 0, test_fraction: float = 0.2) -> tuple[Rows, Rows]:
    """The (train, test) split; the same seed gives the same split."""
    pairs = _pairs(random.Random(seed))
    cut = int(len(pairs) * (1 - test_fraction))
    return pairs[:cut], pairs[cut:]


def write(folder: Path, seed: int = 0) -> None:
    """Write train.jsonl and test.jsonl into a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(("train", "test"), generate(seed), strict=True):
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        (folder / f"{name}.jsonl").write_text(text)


#: The committed dataset.
DATASET = Path(__file__).parent / "data" / "tiny_instructions"

if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else DATASET)

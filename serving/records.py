"""Probe records of a canary analysis: one JSON line per request, read and checked strictly.

A probe writer sends the same kind of requests to the stable and the canary deployment and logs,
for each request, one JSON object:

    {"prompt_id": "p17", "prompt_tokens": 812, "output_tokens": 128, "ttft_s": 0.143,
     "itl_s": 0.0211, "e2e_s": 2.84, "ok": true, "score": 1.0}

`score` is the answer's quality in [0, 1] (null when the request failed, or when the probe does
not grade answers); latencies may be null when the request failed, and `itl_s` when fewer than
two tokens came back (no gap between tokens to time). Other keys (timestamps, pod names) are
ignored. Records are held column by column in numpy arrays, because every statistic the judge
computes is a vectorised operation over a column.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflows.exceptions import LLMFlowError

FIELDS = ("prompt_id", "prompt_tokens", "output_tokens", "ttft_s", "itl_s", "e2e_s", "ok", "score")
"""Every record must carry these keys (with null where the format allows it)."""

LATENCIES = ("ttft_s", "itl_s", "e2e_s")
"""Latency fields, in seconds: positive when present."""


class CanaryInputError(LLMFlowError):
    """Probe records or a canary policy that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class ProbeSet:
    """One arm's probe records, column by column (index i is the i-th record).

    Attributes:
        source: Where the records came from (a file name), for messages.
        prompt_id: Each request's prompt id, as a string (ints are written in decimal).
        prompt_tokens: Prompt length in tokens, >= 1.
        output_tokens: Generated tokens, >= 0.
        ttft_s: Time to first token, seconds; NaN where the record gives null.
        itl_s: Mean inter-token latency, seconds; NaN where null.
        e2e_s: End-to-end latency, seconds; NaN where null.
        ok: Whether the request succeeded.
        score: Answer quality in [0, 1]; NaN where null.
    """

    source: str
    prompt_id: tuple[str, ...]
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    itl_s: np.ndarray
    e2e_s: np.ndarray
    ok: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.prompt_id)

    def latency(self, metric: str) -> np.ndarray:
        """The column of one latency metric (`ttft_s`, `itl_s` or `e2e_s`)."""
        if metric not in LATENCIES:
            raise CanaryInputError(f"unknown latency metric {metric!r}: use one of {LATENCIES}")
        column: np.ndarray = getattr(self, metric)
        return column

    def take(self, index: np.ndarray) -> ProbeSet:
        """The records at `index` (integer positions or a boolean mask), in that order."""
        positions = np.arange(len(self))[index]
        return ProbeSet(
            source=self.source,
            prompt_id=tuple(self.prompt_id[i] for i in positions),
            prompt_tokens=self.prompt_tokens[positions],
            output_tokens=self.output_tokens[positions],
            ttft_s=self.ttft_s[positions],
            itl_s=self.itl_s[positions],
            e2e_s=self.e2e_s[positions],
            ok=self.ok[positions],
            score=self.score[positions],
        )

    @classmethod
    def concat(cls, parts: list[ProbeSet]) -> ProbeSet:
        """Several batches of one arm as one set, in order (for sequential judging)."""
        if not parts:
            raise CanaryInputError("no batches to join: give at least one batch of records")
        return cls(
            source=parts[0].source,
            prompt_id=tuple(i for part in parts for i in part.prompt_id),
            **{
                name: np.concatenate([getattr(part, name) for part in parts]) for name in FIELDS[1:]
            },
        )

    @classmethod
    def from_columns(
        cls,
        *,
        prompt_tokens: np.ndarray,
        ttft_s: np.ndarray,
        itl_s: np.ndarray,
        ok: np.ndarray | None = None,
        score: np.ndarray | None = None,
        prompt_id: list[str] | tuple[str, ...] | None = None,
        output_tokens: np.ndarray | None = None,
        e2e_s: np.ndarray | None = None,
        source: str = "arrays",
    ) -> ProbeSet:
        """Build a set from arrays (simulations, tests); omitted columns get neutral values.

        Missing prompt ids are unique per record and per call (`<random>-0`, ...), so two such
        sets are never paired by accident; missing `ok` means every request succeeded,
        missing `score` means no grading.
        """
        n = len(prompt_tokens)
        ok_col = np.ones(n, bool) if ok is None else np.asarray(ok, bool)
        return cls(
            source=source,
            prompt_id=tuple(prompt_id) if prompt_id is not None else _fresh_ids(n),
            prompt_tokens=np.asarray(prompt_tokens, np.int64),
            output_tokens=(
                np.full(n, 128, np.int64)
                if output_tokens is None
                else np.asarray(output_tokens, np.int64)
            ),
            ttft_s=np.asarray(ttft_s, float),
            itl_s=np.asarray(itl_s, float),
            e2e_s=np.full(n, np.nan) if e2e_s is None else np.asarray(e2e_s, float),
            ok=ok_col,
            score=np.full(n, np.nan) if score is None else np.asarray(score, float),
        )


def _fresh_ids(n: int) -> tuple[str, ...]:
    """Prompt ids no other set shares."""
    prefix = uuid.uuid4().hex[:12]
    return tuple(f"{prefix}-{i}" for i in range(n))


def read_probes(path: Path) -> ProbeSet:
    """Read and check one arm's probe records from a JSONL file.

    Args:
        path: One JSON object per line; blank lines are skipped.

    Returns:
        The records, column by column.

    Raises:
        CanaryInputError: The file cannot be read or holds no records, or a line is not a JSON
            object, lacks a field, or has a value of the wrong type or range; the message gives
            file:line, the field, the value and what is expected.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CanaryInputError(f"cannot read probe records {path}: {exc}") from None
    rows: list[tuple[str, int, int, float, float, float, bool, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_parse_record(f"{path}:{number}", line))
    if not rows:
        raise CanaryInputError(
            f"{path}: no probe records: write one JSON object per request with {FIELDS}"
        )
    ids, prompt, output, ttft, itl, e2e, ok, score = zip(*rows, strict=True)
    return ProbeSet(
        source=str(path),
        prompt_id=ids,
        prompt_tokens=np.array(prompt, np.int64),
        output_tokens=np.array(output, np.int64),
        ttft_s=np.array(ttft, float),
        itl_s=np.array(itl, float),
        e2e_s=np.array(e2e, float),
        ok=np.array(ok, bool),
        score=np.array(score, float),
    )


def _parse_record(where: str, line: str) -> tuple[str, int, int, float, float, float, bool, float]:
    """One line as a tuple in `FIELDS` order, null numbers as NaN; errors say `where`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CanaryInputError(
            f"{where}: not valid JSON ({exc.msg}): write one object per line"
        ) from None
    if not isinstance(record, dict):
        raise CanaryInputError(f"{where}: a probe record must be a JSON object, not {line[:60]!r}")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise CanaryInputError(
            f"{where}: missing field(s) {', '.join(missing)}: every record needs {FIELDS} "
            "(null is allowed for latencies and score of a failed request)"
        )
    prompt_id = record["prompt_id"]
    if isinstance(prompt_id, bool) or not isinstance(prompt_id, str | int) or prompt_id == "":
        raise _bad(where, "prompt_id", prompt_id, "a non-empty string or an integer")
    ok = record["ok"]
    if not isinstance(ok, bool):
        raise _bad(where, "ok", ok, "true or false")
    prompt_tokens = _count(where, record, "prompt_tokens", minimum=1)
    output_tokens = _count(where, record, "output_tokens", minimum=0)
    latencies = []
    for name in LATENCIES:
        value = record[name]
        # A failed request may have no timings; a single-token answer has no inter-token gap.
        nullable = not ok or (name == "itl_s" and output_tokens < 2)
        if value is None and nullable:
            latencies.append(math.nan)
            continue
        if not _is_number(value) or not 0 < value < math.inf:
            need = "a positive number of seconds" + (" or null" if nullable else "")
            raise _bad(where, name, value, need)
        latencies.append(float(value))
    score = record["score"]
    if score is not None and (not _is_number(score) or not 0 <= score <= 1):
        raise _bad(where, "score", score, "a number in [0, 1] or null")
    if score is not None and not ok:
        raise _bad(
            where, "score", score, "null, because ok is false (a failed request has no answer)"
        )
    return (
        str(prompt_id),
        prompt_tokens,
        output_tokens,
        latencies[0],
        latencies[1],
        latencies[2],
        ok,
        math.nan if score is None else float(score),
    )


def _count(where: str, record: dict[str, object], name: str, *, minimum: int) -> int:
    """An integer field >= minimum."""
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(where, name, value, f"an integer >= {minimum}")
    return value


def _is_number(value: object) -> bool:
    """True for JSON numbers (bools are JSON's true/false, not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bad(where: str, field: str, value: object, expected: str) -> CanaryInputError:
    """The error for one bad field: where, which field, what value, what it must be."""
    return CanaryInputError(f"{where}: field {field!r} is {value!r}: it must be {expected}")

"""Read lm-eval's per-sample logs (`--log_samples`) and pair two models' scores item by item."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from workflows.exceptions import LLMFlowError

DocId = int | str
"""An item's `doc_id` as lm-eval writes it (an int; a str is accepted too)."""

Id = TypeVar("Id", bound=DocId)

DEFAULT_FILTER = "none"
"""The filter lm-eval names a task's unfiltered responses with; preferred when a doc repeats."""

_SHOWN_IDS = 5
"""How many unmatched doc ids an error lists: enough to recognise, few enough to read."""


class EvalInputError(LLMFlowError):
    """An eval results file or a gate setting that cannot be used; the message says which.

    Defined here while `workflows/exceptions.py` is being edited elsewhere; it belongs there.
    """


@dataclass(frozen=True)
class PairedScores:
    """Two models' scores on the same items, aligned index by index.

    Attributes:
        doc_ids: The items, in a fixed order (ints ascending, then strs), so results repeat.
        candidate: The candidate's score on each item.
        reference: The reference's score on each item.
    """

    doc_ids: tuple[DocId, ...]
    candidate: np.ndarray
    reference: np.ndarray


def read_samples(path: Path, metric: str) -> dict[DocId, float]:
    """Read one model's per-item scores for `metric` from an lm-eval samples JSONL file.

    lm-eval writes one JSON object per line with `doc_id`, one key per metric, and bookkeeping
    (`doc`, `arguments`, `resps`, `filter`, ...), which is ignored. A task with several filters
    (e.g. gsm8k's `strict-match` and `flexible-extract`) logs each doc once per filter; the line
    whose filter is "none" is taken, else the first, so both models are read the same way.

    Args:
        path: A `samples_<task>_<time>.jsonl` file written by `lm_eval --log_samples`.
        metric: The per-item key to read, e.g. "acc" or "exact_match".

    Returns:
        The score of every item, by doc_id, as floats (booleans become 0.0 and 1.0).

    Raises:
        EvalInputError: The file is missing or empty, a line is not a JSON object, a doc_id or
            metric value is missing or not usable, or a doc_id repeats under the same filter.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalInputError(f"cannot read eval samples {path}: {exc.strerror or exc}") from None
    chosen: dict[DocId, tuple[int, str | None, dict[str, object]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = _parse_line(path, number, line)
        doc_id = _doc_id(path, number, record)
        raw_filter = record.get("filter")
        filter_name = raw_filter if isinstance(raw_filter, str) else None
        if doc_id not in chosen:
            chosen[doc_id] = (number, filter_name, record)
            continue
        first_number, first_filter, _ = chosen[doc_id]
        if filter_name == first_filter:
            raise EvalInputError(
                f"{path}:{number}: doc_id {doc_id!r} already appears on line {first_number} under "
                f"the same filter {first_filter!r}; is this several tasks' samples in one file? "
                "Give one task's samples file (lm-eval writes one per task)."
            )
        if filter_name == DEFAULT_FILTER:
            chosen[doc_id] = (number, filter_name, record)
    if not chosen:
        raise EvalInputError(
            f"{path} has no samples: expected one JSON object per line, as lm-eval writes with "
            "--log_samples"
        )
    return {
        doc_id: _metric_value(path, number, record, metric)
        for doc_id, (number, _, record) in chosen.items()
    }


def pair_scores(
    candidate: Mapping[Id, float],
    reference: Mapping[Id, float],
    *,
    candidate_label: str = "candidate",
    reference_label: str = "reference",
) -> PairedScores:
    """Align two models' scores on the same items.

    A paired comparison is only meaningful on the same items: two files that cover different
    doc_ids (another task, a limit, a changed dataset revision) are refused, never compared on
    their overlap, since the overlap may be a biased subset.

    Args:
        candidate: The candidate's scores by doc_id.
        reference: The reference's scores by doc_id.
        candidate_label: How errors name the candidate (its file path, in the CLI).
        reference_label: How errors name the reference.

    Returns:
        The scores aligned by doc_id.

    Raises:
        EvalInputError: Either side is empty, or the doc_id sets differ.
    """
    for label, scores in ((candidate_label, candidate), (reference_label, reference)):
        if not scores:
            raise EvalInputError(f"{label} has no items (n = 0): nothing to compare")
    only_candidate = set(candidate) - set(reference)
    only_reference = set(reference) - set(candidate)
    if only_candidate or only_reference:
        parts = []
        if only_candidate:
            parts.append(f"{_some(only_candidate)} only in {candidate_label}")
        if only_reference:
            parts.append(f"{_some(only_reference)} only in {reference_label}")
        raise EvalInputError(
            "the two results cover different items, so they cannot be paired: "
            + "; ".join(parts)
            + ". Evaluate both models on the same task, revision and --limit."
        )
    doc_ids = tuple(sorted(candidate, key=_order))
    return PairedScores(
        doc_ids=doc_ids,
        candidate=np.array([candidate[i] for i in doc_ids], dtype=float),
        reference=np.array([reference[i] for i in doc_ids], dtype=float),
    )


def _parse_line(path: Path, number: int, line: str) -> dict[str, object]:
    """Decode one line, which must be a JSON object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvalInputError(
            f"{path}:{number}: not JSON ({exc.msg}); expected lm-eval's --log_samples output"
        ) from None
    if not isinstance(record, dict):
        raise EvalInputError(
            f"{path}:{number}: a JSON {type(record).__name__}, expected an object with doc_id"
        )
    return record


def _doc_id(path: Path, number: int, record: dict[str, object]) -> DocId:
    """The line's doc_id; a bool or float would pair items by accident, so only int or str."""
    if "doc_id" not in record:
        raise EvalInputError(f"{path}:{number}: no 'doc_id' key; is this a --log_samples file?")
    doc_id = record["doc_id"]
    if isinstance(doc_id, bool) or not isinstance(doc_id, int | str):
        raise EvalInputError(f"{path}:{number}: doc_id {doc_id!r} is not an integer or a string")
    return doc_id


def _metric_value(path: Path, number: int, record: dict[str, object], metric: str) -> float:
    """The line's score for `metric` as a finite float, or an error saying what is there."""
    if metric not in record:
        listed = record.get("metrics")
        known = ", ".join(map(str, listed)) if isinstance(listed, list) else "none listed"
        raise EvalInputError(
            f"{path}:{number}: no metric {metric!r} (this line's metrics: {known}); "
            "pass --metric with a per-item metric the task logs"
        )
    value = record[metric]
    if isinstance(value, list | dict):
        raise EvalInputError(
            f"{path}:{number}: metric {metric!r} is a {type(value).__name__}, not a number: "
            "corpus-level metrics (bleu, chrf, ter, ...) have no per-item score to pair"
        )
    if not isinstance(value, bool | int | float) or not math.isfinite(value):
        raise EvalInputError(
            f"{path}:{number}: metric {metric!r} is {value!r}; expected a finite number or a bool"
        )
    return float(value)


def _order(doc_id: DocId) -> tuple[int, int, str]:
    """Sort key: ints ascending, then strs, so mixed ids still sort."""
    return (0, doc_id, "") if isinstance(doc_id, int) else (1, 0, doc_id)


def _some(ids: set[Id]) -> str:
    """A short list of ids for an error message, with the count when there are more."""
    ordered = sorted(ids, key=_order)
    shown = ", ".join(repr(i) for i in ordered[:_SHOWN_IDS])
    more = f" and {len(ordered) - _SHOWN_IDS} more" if len(ordered) > _SHOWN_IDS else ""
    noun = "doc_id" if len(ordered) == 1 else "doc_ids"
    return f"{len(ordered)} {noun} ({shown}{more})"

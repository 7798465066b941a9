"""The evaluation report: a short HTML page and a PNG chart of candidate against reference.

The page is what a reviewer opens from the run folder (or the Argo UI's artifacts): the gate's
verdict first, then one row per gated metric with both scores, the paired difference, its
interval at the stated confidence, n and the margin, and the reason. The chart shows each
metric's candidate and reference scores side by side, and the paired difference with its
interval against the margin, so a regression is visible at a glance.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: File names inside the report folder.
PAGE, CHART, DECISION = "index.html", "gate.png", "decision.json"


def write_report(
    decisions: Sequence[dict[str, Any]], provenance: dict[str, Any], folder: Path
) -> Path:
    """Write `index.html`, `gate.png` and `decision.json` into `folder`; returns the page.

    Args:
        decisions: One gate decision per metric (`evals.gate` decisions as JSON objects).
        provenance: What was compared (models, suite, harness settings), shown on the page.
        folder: Where the report goes (created).
    """
    folder.mkdir(parents=True, exist_ok=True)
    passed = all(d["passed"] for d in decisions)
    (folder / DECISION).write_text(
        json.dumps({"passed": passed, "gates": list(decisions), "provenance": provenance}, indent=1)
    )
    _chart(decisions, folder / CHART)
    page = folder / PAGE
    page.write_text(_page(decisions, provenance, passed))
    return page


def _chart(decisions: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d["metric"] for d in decisions]
    fig, (scores, diffs) = plt.subplots(
        1, 2, figsize=(10, 1.2 + 0.8 * len(names)), gridspec_kw={"width_ratios": [3, 2]}
    )
    rows = range(len(names))
    height = 0.38
    scores.barh(
        [r + height / 2 for r in rows],
        [d["reference_mean"] for d in decisions],
        height,
        label="reference",
        color="#9aa5b1",
    )
    scores.barh(
        [r - height / 2 for r in rows],
        [d["candidate_mean"] for d in decisions],
        height,
        label="candidate",
        color="#2f7ed8",
    )
    scores.set_yticks(list(rows), names)
    scores.invert_yaxis()
    scores.set_xlabel("score")
    scores.legend(loc="lower right", fontsize="small")
    for row, decision in zip(rows, decisions, strict=True):
        low = decision.get("lower")
        high = decision.get("upper")
        estimate = decision["estimate"]
        color = "#2e7d32" if decision["passed"] else "#c62828"
        left = estimate - low if low is not None else 0.0
        right = high - estimate if high is not None else 0.0
        diffs.errorbar(estimate, row, xerr=[[left], [right]], fmt="o", color=color, capsize=4)
        if decision.get("margin") is not None:
            diffs.axvline(-decision["margin"], color="#c62828", linestyle="--", linewidth=1)
    diffs.axvline(0, color="black", linewidth=0.8)
    diffs.set_yticks(list(rows), [""] * len(names))
    diffs.invert_yaxis()
    diffs.set_xlabel("paired difference, lower bound; dashed: -margin")
    verdict = "PASS" if all(d["passed"] for d in decisions) else "FAIL"
    fig.suptitle(f"Evaluation gate: {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _page(decisions: Sequence[dict[str, Any]], provenance: dict[str, Any], passed: bool) -> str:
    verdict = "PASS" if passed else "FAIL"
    rows = "\n".join(_row(d) for d in decisions)
    facts = "\n".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
        for k, v in provenance.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation gate: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; }}
.PASS {{ color: #2e7d32; }} .FAIL {{ color: #c62828; }}
</style></head><body>
<h1>Evaluation gate: <span class="{verdict}">{verdict}</span></h1>
<p>Candidate against reference on the same items, same harness and settings: a metric passes
when the candidate is shown non-inferior (the lower bound of the paired difference is above
-margin) and above its floor, at the stated confidence.</p>
<img src="{CHART}" alt="candidate and reference scores with the paired difference's interval">
<table><tr><th>metric</th><th>verdict</th><th>candidate</th><th>reference</th>
<th>difference</th><th>interval</th><th>n</th><th>margin</th><th>floor</th><th>why</th></tr>
{rows}
</table>
<h2>What was compared</h2>
<table>{facts}</table>
</body></html>
"""


def _row(d: dict[str, Any]) -> str:
    verdict = "PASS" if d["passed"] else "FAIL"
    cells = [
        html.escape(d["metric"]),
        f'<span class="{verdict}">{verdict}</span>',
        _number(d["candidate_mean"]),
        _number(d["reference_mean"]),
        _number(d["estimate"], signed=True),
        f"[{_bound(d.get('lower'), '-inf')}, {_bound(d.get('upper'), '+inf')}]"
        f" at {d['confidence']:.0%}",
        str(d["n"]),
        _number(d.get("margin")),
        _number(d.get("floor")),
        html.escape(str(d.get("reason", ""))),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _number(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _bound(value: Any, unbounded: str) -> str:
    return unbounded if value is None else f"{value:+.4f}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

"""The canary report: per stage, a JSON of the decision and its evidence, and a chart.

The chart plots time to first token against prompt length for both versions (each request a
point, the median per length stratum a line): the comparison at equal prompt length that the
judge makes for each latency metric of its policy. A canary that merely got longer prompts
sits on the stable line, a prefill regression rises above it at the long end. The title
carries the verdict, so the Argo UI's artifact view tells the story at a glance.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from serving.analysis import StageAnalysis
from serving.judge import json_ready
from serving.records import ProbeSet

#: Length strata of the chart's median lines.
CHART_STRATA = 6


def stage_report(analysis: StageAnalysis) -> dict[str, Any]:
    """The stage's decision and evidence as a JSON-ready dict."""
    return json_ready(
        {
            "stage": analysis.stage,
            "verdict": analysis.verdict,
            "reason": analysis.reason,
            "looks": analysis.looks,
            "probe": analysis.judgement.to_dict(),
            "live": {
                "error": analysis.live_error,
                "checks": {c.name: c.to_dict() for c in analysis.live},
                "stable": asdict(analysis.stable_metrics) if analysis.stable_metrics else None,
                "canary": asdict(analysis.canary_metrics) if analysis.canary_metrics else None,
            },
        }
    )


def stage_evidence(analysis: StageAnalysis) -> dict[str, Any]:
    """What a release record keeps of a stage: the verdict and each check, compactly."""
    checks = [*analysis.judgement.checks, *analysis.live]
    return {
        "stage": analysis.stage,
        "verdict": analysis.verdict,
        "reason": analysis.reason,
        "looks": analysis.looks,
        "checks": {c.name: c.compact() for c in checks if c.verdict != "SKIPPED"},
    }


def write_stage_report(folder: Path, analysis: StageAnalysis) -> tuple[Path, Path]:
    """Write `stage-<weight>.json` and `stage-<weight>.png` into `folder`; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"stage-{analysis.stage}.json"
    data.write_text(json.dumps(stage_report(analysis), indent=2, allow_nan=False) + "\n")
    chart = folder / f"stage-{analysis.stage}.png"
    _chart(analysis, chart)
    return data, chart


def _chart(analysis: StageAnalysis, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    edges = _edges(analysis.stable, analysis.canary)
    for arm, colour in ((analysis.stable, "tab:blue"), (analysis.canary, "tab:orange")):
        name = "stable" if arm is analysis.stable else "canary"
        ok = arm.ok & ~np.isnan(arm.ttft_s)
        x, y = arm.prompt_tokens[ok], arm.ttft_s[ok] * 1000
        ax.scatter(x, y, s=10, alpha=0.35, color=colour, label=f"{name} (n={int(ok.sum())})")
        centres, medians = _binned_medians(x, y, edges)
        if centres:
            ax.plot(centres, medians, color=colour, linewidth=2)
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("time to first token (ms)")
    ax.set_title(f"{analysis.stage}% canary: {analysis.verdict}", color=_colour(analysis.verdict))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _edges(*arms: ProbeSet) -> np.ndarray:
    lengths = np.concatenate([a.prompt_tokens for a in arms]) if arms else np.array([])
    if lengths.size == 0:
        return np.array([0.0, 1.0])
    return np.unique(np.quantile(lengths, np.linspace(0, 1, CHART_STRATA + 1)))


def _binned_medians(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray
) -> tuple[list[float], list[float]]:
    centres, medians = [], []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (x >= low) & (x <= high)
        if inside.any():
            centres.append(float(np.median(x[inside])))
            medians.append(float(np.median(y[inside])))
    return centres, medians


def _colour(verdict: str) -> str:
    return {"PASS": "tab:green", "FAIL": "tab:red"}.get(verdict, "tab:olive")

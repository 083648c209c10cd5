"""Labels and cells the report sections share, and the verdict panel (pure functions, no printing)."""

from __future__ import annotations

from typing import Any

from rich.panel import Panel
from rich.table import Table

LABELS = {
    "accuracy": "Accuracy",
    "nll": "NLL",
    "brier": "Brier",
    "ece": "ECE",
    "ece_adaptive": "Adaptive ECE",
    "mce": "MCE",
    "classwise_ece": "Classwise ECE",
    "aurc": "AURC",
}


def readable(t: Table) -> Table:
    """Numbers never shrink to `0…` on a narrow terminal: numeric (right-aligned) columns keep their width,
    text columns fold onto more lines instead of being cut."""
    for col in t.columns:
        if col.justify == "right":
            col.no_wrap, col.overflow = True, "ignore"
        else:
            col.overflow = "fold"
    return t


def metric_label(name: str, n_bins: int) -> str:
    return f"{LABELS[name]}-{n_bins}" if name in ("ece", "ece_adaptive", "mce", "classwise_ece") else LABELS[name]


HIER_LABELS = {"top1_error": "Top-1 error", "mistake_severity": "Mistake severity"}


def hier_label(name: str) -> str:
    return HIER_LABELS.get(name) or "Avg. hier. distance @" + name.rsplit("_", 1)[1]


def fmt(v: float | None, iv: list[float] | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" + (f" [{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "")


def hierarchy_rows(sections: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    """Rows metric x section (one column per head or report) of the hierarchy metrics."""
    first = next(s for s in sections.values() if s)
    return [
        [hier_label(m)] + [fmt(s["metrics"][m], s["intervals"].get(m)) if s else "-" for s in sections.values()]
        for m in first["metrics"]
    ]


def summary_panel(summary: dict[str, Any]) -> Panel:
    """The verdict in words, above every table."""
    verdict = summary.get("verdict") or (f"use {summary['pick']}" if summary.get("pick") else "verdict")
    colors = {
        "over-confident": "red",
        "under-confident": "yellow",
        "over- and under-confident": "red",
        "miscalibrated": "yellow",
    }
    color = {**colors, "calibrated within noise": "green"}.get(verdict, "cyan")
    return Panel(
        "\n".join(summary.get("lines") or ["(no summary)"]),
        title=verdict,
        title_align="left",
        border_style=color,
        expand=False,
    )

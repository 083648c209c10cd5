"""Out-of-distribution detection: AUROC, AUPR and FPR@95%TPR of every OOD score on every OOD data set (OOD is
the positive class), and the score histograms."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from vcal_cli.reports.figures import plot_ood_histograms, to_png
from vcal_cli.reports.sections.base import (
    Raw,
    Report,
    Section,
    TableSpec,
    heads_of,
    register_section,
    rich_table,
)

COLS = ["head", "OOD data", "score", "AUROC", "AUPR", "FPR@95TPR"]


def _rows(report: Report) -> list[list[str]]:
    return [
        [head, r["dataset"], r["score"], f"{r['auroc']:.4f}", f"{r['aupr']:.4f}", f"{r['fpr95']:.4f}"]
        for head, h in heads_of(report).items()
        for r in h.get("ood") or []
    ]


def _tables(report: Report) -> list[TableSpec]:
    rows = _rows(report)
    return [("Out-of-distribution detection (OOD is the positive class)", COLS, rows)] if rows else []


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`ood_summary`: {dataset: {score: {auroc, aupr, fpr95}}}, for gate rules (`ood_summary.svhn.msp.auroc`)."""
    out: dict[str, Any] = {}
    for r in rows:
        out.setdefault(r["dataset"], {})[r["score"]] = {k: r[k] for k in ("auroc", "aupr", "fpr95")}
    return out


def _terminal(report: Report) -> list[RenderableType]:
    title = "out-of-distribution detection (OOD positive; higher AUROC/AUPR, lower FPR95 are better)"
    if "heads" not in report:
        rows = [r[1:] for r in _rows(report)]
        return [rich_table((title, COLS[1:], rows))] if rows else []
    heads = report["heads"]
    pairs = dict.fromkeys((ds, sc) for h in heads.values() for ds, by in h.get("ood_summary", {}).items() for sc in by)
    rows = [
        [f"{ds} {sc}"] + [f"{x:.4f}" if (x := _get(h, ds, sc)) is not None else "" for h in heads.values()]
        for ds, sc in pairs
    ]
    return [rich_table((title + ": AUROC per head", ["OOD data and score", *heads], rows))] if rows else []


def _get(h: dict[str, Any], ds: str, sc: str) -> float | None:
    return h.get("ood_summary", {}).get(ds, {}).get(sc, {}).get("auroc")


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    images = {}
    rows = {n: h.get("ood") or [] for n, h in heads_of(report).items()}
    for head, r in raw.items():
        for i, (name, scores) in enumerate((r.get("ood_scores") or {}).items()):
            fname = f"ood_{i}.png" if head == "original" else f"ood_{i}_{head}.png"
            label = head if len(raw) > 1 else ""
            images[fname] = to_png(plot_ood_histograms(scores, dataset=name, rows=rows.get(head, []), head=label))
    return images


register_section(
    Section("ood", "Out-of-distribution detection", _tables, ("ood_",), figures=_figures, terminal=_terminal,
            summary=("ood_summary", summary), order=70)
)  # fmt: skip

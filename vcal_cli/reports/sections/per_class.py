"""Per class: one-vs-rest ECE, accuracy and confidence per class, worst first (the 20 worst beyond 20 classes), the
most frequent mistakes as (true, predicted) pairs (readable at 1,000 classes), and the confusion matrix up to 100
classes (for the original head and the retrain's pick)."""

from __future__ import annotations

from typing import Any

from vcal_cli.reports.figures import plot_confusion, to_png
from vcal_cli.reports.sections.base import Raw, Report, Section, TableSpec, heads_of, no_terminal, register_section


def per_class_rows(details: dict[str, Any], names: list[str] | None, top: int | None = None) -> list[list[str]]:
    """The per-class table, worst classwise ECE first: class, count, accuracy, mean confidence, ECE."""
    rows = details.get("per_class") or []
    return [
        [
            names[r["index"]] if names else str(r["index"]),
            str(r["count"]),
            f"{r['accuracy']:.4f}",
            f"{r['confidence']:.4f}",
            f"{r['ece']:.4f}",
        ]
        for r in rows[:top]
    ]


PER_CLASS_COLS = ["class", "n", "accuracy", "mean confidence", "ECE (one-vs-rest)"]


def _shown(report: Report) -> list[str]:
    """The original head, and the retrain's pick."""
    pick = (report.get("summary") or {}).get("pick")
    return ["original"] + ([pick] if pick and pick != "original" else [])


def _tables(report: Report) -> list[TableSpec]:
    out = []
    names = report.get("class_names")
    heads = heads_of(report)
    for head in _shown(report):
        h = heads.get(head) or {}
        if not h.get("details"):
            continue
        rows = per_class_rows(h["details"], names, top=None if len(h["details"]["per_class"]) <= 20 else 20)
        more = len(h["details"]["per_class"]) - len(rows)
        tail = f"; {more} more classes in report.json" if more > 0 else ""
        out.append((f"Per class ({head}), worst one-vs-rest ECE first{tail}", PER_CLASS_COLS, rows))
        pairs = h["details"].get("top_confusions") or []
        if pairs and head == "original":
            label = (lambda i: names[i]) if names else str
            shown = pairs[:10]
            out.append(
                (
                    f"Most frequent mistakes ({head}): the top {len(shown)} (true, predicted) pairs",
                    ["true class", "predicted as", "n", "share of the true class"],
                    [[label(p["true"]), label(p["predicted"]), str(p["count"]), f"{p['share']:.1%}"] for p in shown],
                )
            )
    return out


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    images = {}
    heads = heads_of(report)
    for n in _shown(report):
        confusion = ((heads.get(n) or {}).get("details") or {}).get("confusion")
        if confusion:
            name = "confusion.png" if n == "original" else f"confusion_{n}.png"
            images[name] = to_png(plot_confusion(confusion, report.get("class_names"), title=f"Confusion ({n})"))
    return images


# a terminal with 100 classes would scroll for pages; the verdict panel names the three worst classes
register_section(
    Section(
        key="per-class",
        title="Per class",
        tables=_tables,
        images=("confusion",),
        figures=_figures,
        terminal=no_terminal,
        order=50,
    )
)

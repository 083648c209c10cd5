"""Reliability: the equal-width bins as a table, the binned diagram per head (overlaid as small multiples in a
retrain) and the smooth (kernel) reliability curves."""

from __future__ import annotations

from pathlib import Path

from vcal_cli.metrics import ReliabilityBin
from vcal_cli.reports.figures import plot_reliability, plot_reliability_grid, plot_smooth_reliability, to_png
from vcal_cli.reports.sections.base import Raw, Report, Section, TableSpec, heads_of, no_terminal, register_section


def _tables(report: Report) -> list[TableSpec]:
    heads = heads_of(report)
    first = next(iter(heads.values()))["reliability"]
    cols = ["confidence bin"] + [f"{n}: n / conf. / acc." for n in heads]
    rows = []
    for i, b in enumerate(first):
        if not any(h["reliability"][i]["count"] for h in heads.values()):
            continue  # a bin no head put a sample in
        cells = []
        for h in heads.values():
            c = h["reliability"][i]
            cells.append(f"{c['count']} / {c['confidence']:.3f} / {c['accuracy']:.3f}" if c["count"] else "0 / - / -")
        rows.append([f"[{b['lo']:.2f}, {b['hi']:.2f}{']' if i == len(first) - 1 else ')'}", *cells])
    return [("Reliability bins (equal width, empty bins left out; under 20 samples a bin says little)", cols, rows)]


def _bins(h: dict) -> list[ReliabilityBin]:
    return [ReliabilityBin(**b) for b in h["reliability"]]


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    """reliability.png (and reliability_HEAD.png and reliability_compare.png in a retrain), smooth_reliability.png."""
    data = report["data"]
    images = {}
    if "heads" not in report:
        title = f"{Path(str(report['checkpoint'].get('path'))).name} on {data['name']}:{data['split']}"
        images["reliability.png"] = to_png(plot_reliability(_bins(report), ece=report["metrics"]["ece"], title=title))
    else:
        heads = report["heads"]
        curves = {n: (_bins(h), h["metrics"]["ece"]) for n, h in heads.items()}
        images["reliability_compare.png"] = to_png(plot_reliability_grid(curves))
        for name, (bins, ece) in curves.items():
            fname = "reliability.png" if name == "original" else f"reliability_{name}.png"
            title = f"{name} on {data['name']}:test"
            images[fname] = to_png(plot_reliability(bins, ece=ece, title=title, label=name))
    smooth = {
        n: {**h["details"]["smooth_curve"], **h["details"]["smooth"]}
        for n, h in heads_of(report).items()
        if h.get("details")
    }
    if smooth:
        title = f"Smooth reliability on {data['name']}:{data['split']}"
        images["smooth_reliability.png"] = to_png(plot_smooth_reliability(smooth, title=title))
    return images


# the bins table lives in the documents; the terminal's verdict panel names the bins that hold the ECE
register_section(
    Section(
        key="reliability",
        title="Reliability",
        tables=_tables,
        images=("reliability", "smooth"),
        figures=_figures,
        terminal=no_terminal,
        order=30,
    )
)

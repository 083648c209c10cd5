"""The before/after report of `vcal retrain`: one column per head, diagrams per head and overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from vcal_cli.metrics import LOWER_IS_BETTER, METRIC_NAMES
from vcal_cli.reports.documents import to_html, to_markdown
from vcal_cli.reports.figures import plot_reliability, plot_reliability_grid, to_png
from vcal_cli.reports.tables import metric_label, readable
from vcal_cli.reports.writer import detail_images, metrics_frame, robustness_images, write_files


def retrain_table(report: dict[str, Any]) -> Table:
    heads, s = report["heads"], report["settings"]
    t = Table(
        title=f"{report['checkpoint'].get('path')}  on  {report['data']['name']}:test  "
        f"(n={report['data']['n']}; 95% intervals below each value)",
        title_justify="left",
    )
    t.add_column("metric")
    for name in heads:
        t.add_column(name, justify="right")
    orig = heads["original"]["metrics"]
    for m in METRIC_NAMES:
        cells = []
        for name, h in heads.items():
            v, (lo, hi) = h["metrics"][m], h["intervals"].get(m) or (None, None)
            better = (v < orig[m]) if LOWER_IS_BETTER[m] else (v > orig[m])
            color = "" if name == "original" or v == orig[m] else ("green" if better else "red")
            ci = f"\n[dim][{lo:.4f}, {hi:.4f}][/dim]" if lo is not None else ""
            cells.append(f"[{color}]{v:.4f}[/{color}]{ci}" if color else f"{v:.4f}{ci}")
        t.add_row(metric_label(m, s.get("bins", 15)), *cells)
    return readable(t)


def write_retrain_report(report: Any, out_dir: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """report.json (with `heads`), metrics.csv, report.md/html, and reliability PNGs per head and overlaid."""
    d = report.to_dict()
    images: dict[str, bytes] = {}
    curves = {}
    for name, h in report.heads.items():
        fname = "reliability.png" if name == "original" else f"reliability_{name}.png"
        images[fname] = to_png(
            plot_reliability(
                h.result.reliability, ece=h.result.metrics.ece, title=f"{name} on {d['data']['name']}:test", label=name
            )
        )
        curves[name] = (h.result.reliability, h.result.metrics.ece)
    images = {"reliability_compare.png": to_png(plot_reliability_grid(curves)), **images}
    pick = (d.get("summary") or {}).get("pick")
    images |= detail_images(d, ("original", pick) if pick else ("original",))
    images |= robustness_images({n: h.robustness or {} for n, h in report.heads.items()})
    title = "vcal retrain report"
    return write_files(
        out_dir,
        {
            **images,
            "metrics.csv": metrics_frame(d).to_csv(index=False),
            "report.md": to_markdown(d, images, title),
            "report.html": to_html(d, images, title),
            "report.json": report.to_json(),
        },
        inputs,
    )

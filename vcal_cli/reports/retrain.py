"""The files of `vcal retrain`'s before/after report: every section with one column (or line) per head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vcal_cli.reports.documents import to_html, to_markdown
from vcal_cli.reports.sections import section_figures
from vcal_cli.reports.writer import metrics_frame, write_files


def write_retrain_report(report: Any, out_dir: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """report.json (with `heads`), metrics.csv, report.md/html, and reliability PNGs per head and overlaid."""
    d = report.to_dict()
    images = section_figures(d, {n: h.robustness or {} for n, h in report.heads.items()})
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

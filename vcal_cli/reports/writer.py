"""Write a report directory: every file atomic, everything rendered before the first write,
report.json last (its presence marks a complete report)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vcal_cli._io import atomic_write_bytes, atomic_write_text, same_file
from vcal_cli.errors import ReportError
from vcal_cli.metrics import METRIC_NAMES
from vcal_cli.reports.documents import to_html, to_markdown
from vcal_cli.reports.figures import plot_reliability, to_png
from vcal_cli.reports.schema import AuditReport

REPORT_FILES = ("reliability.png", "metrics.csv", "report.md", "report.html", "report.json")


def metrics_frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame([{"metric": k, "value": report["metrics"][k],
                          "ci_low": report["intervals"].get(k, [None, None])[0],
                          "ci_high": report["intervals"].get(k, [None, None])[1]} for k in METRIC_NAMES])


def write_report(report: AuditReport, out_dir: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """Write reliability.png, metrics.csv, report.md, report.html and report.json into `out_dir`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out '{out}' is a file, not a directory", hint="choose a directory for the report")
    for name in REPORT_FILES:
        for src in inputs:
            if same_file(src, out / name):
                raise ReportError(f"refusing to write '{out / name}' over an input file", hint="choose another --out")
    d = report.to_dict()
    title = f"{Path(str(d['checkpoint'].get('path'))).name} on {d['data']['name']}:{d['data']['split']}"
    images = {"reliability.png": to_png(plot_reliability(report.result.reliability, ece=d["metrics"]["ece"],
                                                         title=title))}
    csv = metrics_frame(d).to_csv(index=False)
    md, page, js = to_markdown(d, images), to_html(d, images), report.to_json()
    try:
        for name, data in images.items():
            atomic_write_bytes(out / name, data)
        atomic_write_text(out / "metrics.csv", csv)
        atomic_write_text(out / "report.md", md)
        atomic_write_text(out / "report.html", page)
        atomic_write_text(out / "report.json", js)
    except OSError as e:
        raise ReportError(f"cannot write the report into '{out}' ({e.strerror})") from None
    return out

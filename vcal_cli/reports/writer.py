"""Write a report directory: everything rendered before the first write, every file atomic,
report.json last (its presence marks a complete report)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from vcal_cli._io import atomic_write_many, pause_point, same_file
from vcal_cli.errors import ReportError
from vcal_cli.metrics import METRIC_NAMES
from vcal_cli.reports.documents import to_html, to_markdown
from vcal_cli.reports.schema import AuditReport
from vcal_cli.reports.sections import section_figures

REPORT_FILES = ("reliability.png", "metrics.csv", "report.md", "report.html", "report.json")


def metrics_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per (head, metric): value and interval. An audit has the single head 'original'."""
    heads = report.get("heads") or {"original": report}
    return pd.DataFrame(
        [
            {
                "head": h,
                "metric": k,
                "value": r["metrics"][k],
                "ci_low": (r["intervals"].get(k) or [None, None])[0],
                "ci_high": (r["intervals"].get(k) or [None, None])[1],
            }
            for h, r in heads.items()
            for k in METRIC_NAMES
        ]
    )


LOCK = ".vcal-report.lock"


def write_files(out_dir: str | Path, files: dict[str, bytes | str], inputs: tuple[Path, ...] = ()) -> Path:
    """Write `files` into `out_dir` atomically, report.json last; refuse to overwrite an input."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out '{out}' is a file, not a directory", hint="choose a directory for the report")
    for name in files:
        for src in inputs:
            if same_file(src, out / name):
                raise ReportError(f"refusing to write '{out / name}' over an input file", hint="choose another --out")
    order = sorted(files, key=lambda n: n == "report.json")
    blobs = {out / n: (files[n].encode("utf-8") if isinstance(files[n], str) else files[n]) for n in order}
    created, lock = not out.exists(), out / LOCK
    fresh_lock = not lock.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        pause_point(f"report-lock-wait:{out.name}")  # the lock test holds runs here and just inside
        with FileLock(lock):  # two runs writing one --out: each writes all its files, one after the other
            pause_point(f"report-lock-held:{out.name}")
            atomic_write_many(blobs)  # all written aside first: a failure leaves an older report there whole
    except OSError as e:
        _tidy(out, created, fresh_lock)
        if e.errno == errno.ENOSPC:
            need = sum(len(b) for b in blobs.values()) / 1e6
            kept = "" if created else " (what was there before is kept as it was)"
            raise ReportError(
                f"the disk holding '{out}' is full: the report needs {need:.1f} MB; nothing was written there{kept}",
                hint="free space there or choose another --out",
            ) from None
        raise ReportError(f"cannot write the report into '{out}' ({e.strerror})") from None
    return out


def _tidy(out: Path, created: bool, fresh_lock: bool) -> None:
    """After a failed write: the lock file this run created goes, and the folder too when this run created it."""
    try:
        if fresh_lock:
            (out / LOCK).unlink(missing_ok=True)
        if created:
            out.rmdir()
    except OSError:
        pass  # another run is using the folder (or it is not empty): leave it


def write_report(report: AuditReport, out_dir: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """Write reliability.png, metrics.csv, report.md, report.html and report.json into `out_dir`."""
    d = report.to_dict()
    images = section_figures(d, {"original": report.robustness_sections()})
    return write_files(
        out_dir,
        {
            **images,
            "metrics.csv": metrics_frame(d).to_csv(index=False),
            "report.md": to_markdown(d, images, "vcal audit report"),
            "report.html": to_html(d, images, "vcal audit report"),
            "report.json": report.to_json(),
        },
        inputs,
    )

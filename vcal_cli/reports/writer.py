"""Write a report directory: everything rendered before the first write, every file atomic,
report.json last (its presence marks a complete report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vcal_cli._io import atomic_write_bytes, same_file
from vcal_cli.errors import ReportError
from vcal_cli.metrics import METRIC_NAMES
from vcal_cli.reports.documents import to_html, to_markdown
from vcal_cli.reports.figures import (
    plot_adversarial,
    plot_confusion,
    plot_ood_histograms,
    plot_reliability,
    plot_risk_coverage,
    plot_shift,
    plot_smooth_reliability,
    to_png,
)
from vcal_cli.reports.schema import AuditReport, shift_means

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
    try:
        for name in order:
            data = files[name]
            atomic_write_bytes(out / name, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as e:
        raise ReportError(f"cannot write the report into '{out}' ({e.strerror})") from None
    return out


def robustness_images(sections: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """shift.png and adversarial.png (one line per head) and OOD histograms per data set and head, from each
    head's robustness sections (`shift`, `adversarial`, `ood`, `ood_scores`)."""

    images = {}
    shift = {h: shift_means(r["shift"]) for h, r in sections.items() if r.get("shift")}
    if shift:
        images["shift.png"] = to_png(plot_shift(shift))
    adv = {h: r["adversarial"] for h, r in sections.items() if r.get("adversarial")}
    if adv:
        images["adversarial.png"] = to_png(plot_adversarial(adv))
    for head, r in sections.items():
        for i, (name, scores) in enumerate((r.get("ood_scores") or {}).items()):
            fname = f"ood_{i}.png" if head == "original" else f"ood_{i}_{head}.png"
            label = head if len(sections) > 1 else ""
            images[fname] = to_png(plot_ood_histograms(scores, dataset=name, rows=r.get("ood") or [], head=label))
    return images


def detail_images(d: dict[str, Any], confusion_for: tuple[str, ...] = ("original",)) -> dict[str, bytes]:
    """smooth_reliability.png (small multiples per head), risk_coverage.png (one line per head) and
    confusion[_HEAD].png for the heads named, from a report dict's `details`."""
    heads = {n: h["details"] for n, h in (d.get("heads") or {"original": d}).items() if h.get("details")}
    if not heads:
        return {}
    where = f"{d['data']['name']}:{d['data']['split']}"
    curves = {n: {**x["smooth_curve"], **x["smooth"]} for n, x in heads.items()}
    images = {
        "smooth_reliability.png": to_png(plot_smooth_reliability(curves, title=f"Smooth reliability on {where}")),
        "risk_coverage.png": to_png(
            plot_risk_coverage({n: x["risk_coverage"] for n, x in heads.items()}, title=f"Risk-coverage on {where}")
        ),
    }
    for n in confusion_for:
        if n in heads and heads[n].get("confusion"):
            name = "confusion.png" if n == "original" else f"confusion_{n}.png"
            images[name] = to_png(plot_confusion(heads[n]["confusion"], d.get("class_names"), title=f"Confusion ({n})"))
    return images


def write_report(report: AuditReport, out_dir: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """Write reliability.png, metrics.csv, report.md, report.html and report.json into `out_dir`."""
    d = report.to_dict()
    title = f"{Path(str(d['checkpoint'].get('path'))).name} on {d['data']['name']}:{d['data']['split']}"
    images = {
        "reliability.png": to_png(plot_reliability(report.result.reliability, ece=d["metrics"]["ece"], title=title))
    }
    images |= detail_images(d)
    images |= robustness_images({"original": report.robustness_sections()})
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

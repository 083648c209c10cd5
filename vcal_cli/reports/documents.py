"""report.md and a self-contained report.html (PNGs embedded as base64), from plain rows."""

from __future__ import annotations

import base64
import html
from typing import Any

from vcal_cli.data.preprocessing import Preprocessing
from vcal_cli.metrics import METRIC_NAMES
from vcal_cli.reports.tables import hier_label, hierarchy_rows, metric_label


def fmt_ci(iv: Any) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "-"


def metric_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the metrics table: one value column (audit) or one per head (retrain),
    followed by the hierarchy metrics when the report has them."""
    bins = report["settings"].get("bins", 15)
    if "heads" not in report:
        rows = [
            [metric_label(n, bins), f"{report['metrics'][n]:.4f}", fmt_ci(report["intervals"].get(n))]
            for n in METRIC_NAMES
        ]
        if h := report.get("hierarchy"):
            rows += [
                [hier_label(m), "-" if v is None else f"{v:.4f}", fmt_ci(h["intervals"].get(m))]
                for m, v in h["metrics"].items()
            ]
        return ["metric", "value", "95% interval"], rows
    heads = report["heads"]
    rows = [
        [metric_label(n, bins)] + [f"{h['metrics'][n]:.4f} {fmt_ci(h['intervals'].get(n))}" for h in heads.values()]
        for n in METRIC_NAMES
    ]
    if any(h.get("hierarchy") for h in heads.values()):
        rows += hierarchy_rows({name: h.get("hierarchy") for name, h in heads.items()})
    return ["metric", *heads], rows


def header_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    ck, d, s = report["checkpoint"], report["data"], report["settings"]
    rows = [
        (
            "Checkpoint",
            f"{ck.get('path')} (sha256 {str(ck.get('sha256'))[:12]}..., arch {ck.get('arch')}, "
            f"{ck.get('num_classes')} classes)",
        ),
        ("Data", f"{d['name']}, split {d['split']}, n = {d['n']}"),
        *([("Preprocessing", prep_line(s["preprocessing"]))] if s.get("preprocessing") else []),
        ("Settings", f"{s.get('bins')} bins, {s.get('bootstrap')} bootstrap resamples (seed {s.get('seed')})"),
    ]
    for name, h in report.get("heads", {}).items():
        if name != "original":
            fitted = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in h["fitted"].items())
            rows.append((f"Head {name}", f"{h['checkpoint']}" + (f" ({fitted})" if fitted else "")))
    rows.append(("vcal", f"{report['vcal_version']}, {report['created']}"))
    return rows


def prep_line(p: dict[str, Any]) -> str:
    """report.json's `settings.preprocessing` as one line (`Preprocessing.describe`)."""
    return Preprocessing.from_dict(p, p.get("source", "?")).describe()


def ood_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [r["dataset"], r["score"], f"{r['auroc']:.4f}", f"{r['aupr']:.4f}", f"{r['fpr95']:.4f}"]
        for r in report.get("ood") or []
    ]


OOD_COLS = ["OOD data", "score", "AUROC", "AUPR", "FPR@95TPR"]


def to_markdown(report: dict[str, Any], images: dict[str, bytes], title: str) -> str:
    cols, rows = metric_rows(report)
    lines = [f"# {title}", ""]
    lines += [f"> **Warning:** {w}" + "\n" for w in report.get("warnings") or []]
    lines += [f"- **{k}**: {v}" for k, v in header_rows(report)]
    lines += ["", "| " + " | ".join(cols) + " |", "| --- |" + " ---: |" * (len(cols) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if oods := ood_rows(report):
        lines += ["", "| " + " | ".join(OOD_COLS) + " |", "| --- | --- | ---: | ---: | ---: |"]
        lines += ["| " + " | ".join(r) + " |" for r in oods]
    lines += [""] + [f"![{name}]({name})" for name in images] + [""]
    return "\n".join(lines)


def to_html(report: dict[str, Any], images: dict[str, bytes], title: str) -> str:
    e = html.escape
    cols, rows = metric_rows(report)
    head = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in header_rows(report))
    table = (
        "<tr>"
        + "".join(f"<th>{e(c)}</th>" for c in cols)
        + "</tr>"
        + "".join(
            "<tr><td>" + e(r[0]) + "</td>" + "".join(f"<td class=n>{e(c)}</td>" for c in r[1:]) + "</tr>" for r in rows
        )
    )
    oods = ood_rows(report)
    ood = (
        (
            "<table><tr>"
            + "".join(f"<th>{e(c)}</th>" for c in OOD_COLS)
            + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in oods)
            + "</table>"
        )
        if oods
        else ""
    )
    imgs = "".join(
        f'<figure><img alt="{e(n)}" src="data:image/png;base64,{base64.b64encode(b).decode()}">'
        f"<figcaption>{e(n)}</figcaption></figure>"
        for n, b in images.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}} td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} img{{max-width:100%}} figure{{display:inline-block}}
.warn{{color:#a00;background:#fee;border:1px solid #d88;padding:.5rem .8rem}}
</style></head><body>
<h1>{e(title)}</h1>
{"".join(f"<p class=warn role=alert><strong>Warning:</strong> {e(w)}</p>" for w in report.get("warnings") or [])}
<table>{head}</table>
<table>{table}</table>
{ood}
{imgs}
</body></html>
"""

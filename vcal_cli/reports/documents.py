"""report.md and a self-contained report.html (PNG embedded as base64)."""

from __future__ import annotations

import base64
import html
from typing import Any

from vcal_cli.metrics import METRIC_NAMES
from vcal_cli.reports.tables import metric_label


def _rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    bins = report["settings"].get("bins", 15)
    out = []
    for name in METRIC_NAMES:
        lo, hi = report["intervals"].get(name, (None, None))
        out.append((metric_label(name, bins), f"{report['metrics'][name]:.4f}",
                    f"[{lo:.4f}, {hi:.4f}]" if lo is not None else "-"))
    return out


def _header(report: dict[str, Any]) -> list[tuple[str, str]]:
    ck, d, s = report["checkpoint"], report["data"], report["settings"]
    return [
        ("Checkpoint", f"{ck.get('path')} (sha256 {str(ck.get('sha256'))[:12]}..., arch {ck.get('arch')}, "
                       f"{ck.get('num_classes')} classes)"),
        ("Data", f"{d['name']}, split {d['split']}, n = {d['n']}"),
        ("Settings", f"{s.get('bins')} bins, {s.get('bootstrap')} bootstrap resamples (seed {s.get('seed')})"),
        ("vcal", f"{report['vcal_version']}, {report['created']}"),
    ]


def to_markdown(report: dict[str, Any], images: dict[str, bytes]) -> str:
    lines = ["# vcal audit report", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header(report)]
    lines += ["", "| metric | value | 95% interval |", "| --- | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _rows(report)]
    lines += [""] + [f"![{name}]({name})" for name in images] + [""]
    return "\n".join(lines)


def to_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    e = html.escape
    head = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _header(report))
    rows = "".join(f"<tr><td>{e(a)}</td><td class=n>{e(b)}</td><td class=n>{e(c)}</td></tr>"
                   for a, b, c in _rows(report))
    imgs = "".join(f'<figure><img alt="{e(n)}" src="data:image/png;base64,{base64.b64encode(b).decode()}">'
                   f"<figcaption>{e(n)}</figcaption></figure>" for n, b in images.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vcal audit report</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}} td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} img{{max-width:100%}} figure{{display:inline-block}}
</style></head><body>
<h1>vcal audit report</h1>
<table>{head}</table>
<table><tr><th>metric</th><th>value</th><th>95% interval</th></tr>{rows}</table>
{imgs}
</body></html>
"""

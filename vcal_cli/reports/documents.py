"""report.md and a self-contained report.html (PNGs embedded as base64), from report.json's dict.

Both documents are the registered sections in order (`vcal_cli.reports.sections`), each with its tables and
the images it owns (by file-name prefix). The verdict (`summary`), the warnings and the setup always come
first; images no section claims come last.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from vcal_cli.data.preprocessing import Preprocessing
from vcal_cli.reports.sections import Section, TableSpec, list_sections


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


def weights_line(w: dict[str, Any]) -> str:
    """report.json's `checkpoint.weights` (a file with raw and EMA weights) as one line."""
    name = {"ema": "EMA", "raw": "raw"}
    return (
        f"weights: {name[w['set']]} ('{w['key']}'); the file also holds {name[w['other']]} weights "
        f"('{w['other_key']}'): --weight-set {w['other']} audits those"
    )


def prep_line(p: dict[str, Any]) -> str:
    """report.json's `settings.preprocessing` as one line (`Preprocessing.describe`)."""
    return Preprocessing.from_dict(p, p.get("source", "?")).describe()


def _layout(report: dict[str, Any], images: dict[str, bytes]) -> list[tuple[Section, list[TableSpec], list[str]]]:
    """The sections that have something to show: (section, its tables, its image names)."""
    used: set[str] = set()
    out = []
    for s in list_sections():
        names = [n for n in images if n not in used and any(n.startswith(p) for p in s.images)]
        used.update(names)
        tables = [t for t in s.tables(report) if t[2]]
        if tables or names:
            out.append((s, tables, names))
    if rest := [n for n in images if n not in used]:
        out.append((Section(key="figures", title="Other figures", tables=lambda r: []), [], rest))
    return out


def to_markdown(report: dict[str, Any], images: dict[str, bytes], title: str) -> str:
    lines = [f"# {title}", ""]
    lines += [f"> **Warning:** {w}" + "\n" for w in report.get("warnings") or []]
    if summary := report.get("summary"):
        lines += ["## Verdict", ""] + [f"- {x}" for x in summary["lines"]] + [""]
    lines += [f"- **{k}**: {v}" for k, v in header_rows(report)]
    for s, tables, names in _layout(report, images):
        lines += ["", f"## {s.title}"]
        for caption, cols, rows in tables:
            lines += ["", f"*{caption}*", "", "| " + " | ".join(cols) + " |", "| --- |" + " ---: |" * (len(cols) - 1)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += [""] + [f"![{n}]({n})" for n in names]
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5rem 0 1rem} td,th{border:1px solid #ccc;padding:.25rem .55rem;text-align:left}
th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums} caption{text-align:left;
font-style:italic;padding:.3rem 0;white-space:nowrap}
img{max-width:100%;height:auto} figure{display:inline-block;margin:.5rem}
.warn{color:#a00;background:#fee;border:1px solid #d88;padding:.5rem .8rem}
.verdict{border-left:.35rem solid #36c;background:#f3f6fc;padding:.4rem 1rem} nav ol{columns:2}
section{margin-top:1.5rem} .scroll{overflow-x:auto}
@media print{nav{display:none} section{break-inside:avoid-page} body{max-width:none;margin:0}}
"""


def _html_table(caption: str, cols: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = "".join(
        "<tr><td>" + e(r[0]) + "</td>" + "".join(f"<td class=n>{e(c)}</td>" for c in r[1:]) + "</tr>" for r in rows
    )
    return f"<div class=scroll><table><caption>{e(caption)}</caption><tr>{head}</tr>{body}</table></div>"


def to_html(report: dict[str, Any], images: dict[str, bytes], title: str) -> str:
    e = html.escape
    layout = _layout(report, images)
    summary = report.get("summary")
    toc = [("verdict", "Verdict")] if summary else []
    toc += [("setup", "Setup")] + [(s.key, s.title) for s, _, _ in layout]
    parts = [
        f'<nav aria-label="contents"><ol>{"".join(f"<li><a href=#{k}>{e(t)}</a></li>" for k, t in toc)}</ol></nav>'
    ]
    parts += [f"<p class=warn role=alert><strong>Warning:</strong> {e(w)}</p>" for w in report.get("warnings") or []]
    if summary:
        items = "".join(f"<li>{e(x)}</li>" for x in summary["lines"])
        parts.append(f"<section id=verdict class=verdict><h2>Verdict</h2><ul>{items}</ul></section>")
    setup = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in header_rows(report))
    parts.append(f"<section id=setup><h2>Setup</h2><table>{setup}</table></section>")
    for s, tables, names in layout:
        figs = "".join(
            f'<figure><img alt="{e(n)}" src="data:image/png;base64,{base64.b64encode(images[n]).decode()}">'
            f"<figcaption>{e(n)}</figcaption></figure>"
            for n in names
        )
        body = "".join(_html_table(*t) for t in tables)
        parts.append(f"<section id={s.key}><h2>{e(s.title)}</h2>{body}{figs}</section>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{CSS}</style></head><body>
<h1>{e(title)}</h1>
{"".join(parts)}
</body></html>
"""

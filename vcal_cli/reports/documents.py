"""report.md and a self-contained report.html (PNGs embedded as base64), from report.json's dict.

Both documents are the same list of sections, each one `Section`: an anchor, a title, its tables (each a
caption, columns and rows of strings, built from the report dict alone) and the images it owns (by file
name prefix). A new section is one `Section(...)` in `SECTIONS`; the documents, their tables of contents and
the browser test pick it up. The verdict (`summary`) and the warnings always come first.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vcal_cli.data.preprocessing import Preprocessing
from vcal_cli.metrics import METRIC_NAMES
from vcal_cli.reports.summary import VERDICT_METRICS
from vcal_cli.reports.tables import PER_CLASS_COLS, hier_label, hierarchy_rows, metric_label, per_class_rows

TableSpec = tuple[str, list[str], list[list[str]]]  # caption, columns, rows


def fmt_ci(iv: Any) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "-"


def _heads(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every evaluated predictor: the audit's single 'original', or the retrain's heads."""
    return report.get("heads") or {"original": report}


def extra_rows(d: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Smooth ECE and selective accuracy (no intervals) from a head's `details`."""
    if not d:
        return []
    rows = [("Smooth ECE", f"{d['smooth']['smece']:.4f}"), ("Conf. - acc. gap", f"{d['gap']:+.4f}")]
    rows += [(f"Sel. accuracy @{float(k.split('_')[1]):.0%}", f"{v:.4f}") for k, v in d["selective"].items()]
    return rows


def metric_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the metrics table: one value column (audit) or one per head (retrain), then smooth
    ECE and selective accuracy, then the hierarchy metrics when the report has them."""
    bins = report["settings"].get("bins", 15)
    if "heads" not in report:
        rows = [
            [metric_label(n, bins), f"{report['metrics'][n]:.4f}", fmt_ci(report["intervals"].get(n))]
            for n in METRIC_NAMES
        ]
        d = report.get("details")
        for label, v in extra_rows(d):
            iv = d.get("gap_interval") if d and label.startswith("Conf.") else None
            rows.append([label, v, fmt_ci(iv)])
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
    extras = {name: dict(extra_rows(h.get("details"))) for name, h in heads.items()}
    labels = next((list(e) for e in extras.values() if e), [])
    rows += [[label] + [extras[n].get(label, "-") for n in heads] for label in labels]
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
        [head, r["dataset"], r["score"], f"{r['auroc']:.4f}", f"{r['aupr']:.4f}", f"{r['fpr95']:.4f}"]
        for head, h in _heads(report).items()
        for r in h.get("ood") or []
    ]


OOD_COLS = ["head", "OOD data", "score", "AUROC", "AUPR", "FPR@95TPR"]


# --- the sections ---------------------------------------------------------------------------------------


def _metrics(report: dict[str, Any]) -> list[TableSpec]:
    cols, rows = metric_rows(report)
    return [("Metrics on the test split (95% percentile-bootstrap intervals)", cols, rows)]


def _reliability(report: dict[str, Any]) -> list[TableSpec]:
    heads = _heads(report)
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


def _selective(report: dict[str, Any]) -> list[TableSpec]:
    heads = {n: h["details"] for n, h in _heads(report).items() if h.get("details")}
    if not heads:
        return []
    first = next(iter(heads.values()))
    rows = [[f"{float(k.split('_')[1]):.0%}"] + [f"{d['selective'][k]:.4f}" for d in heads.values()]
            for k in first["selective"]]  # fmt: skip
    rows.append(["AURC"] + [f"{_heads(report)[n]['metrics']['aurc']:.4f}" for n in heads])
    return [("Selective accuracy: accuracy of the most confident samples at each coverage", ["coverage", *heads], rows)]


def _per_class(report: dict[str, Any]) -> list[TableSpec]:
    out = []
    names = report.get("class_names")
    for head, h in _heads(report).items():
        if not h.get("details") or (head != "original" and head != (report.get("summary") or {}).get("pick")):
            continue
        rows = per_class_rows(h["details"], names, top=None if len(h["details"]["per_class"]) <= 20 else 20)
        more = len(h["details"]["per_class"]) - len(rows)
        tail = f"; {more} more classes in report.json" if more > 0 else ""
        out.append((f"Per class ({head}), worst one-vs-rest ECE first{tail}", PER_CLASS_COLS, rows))
    return out


def _hierarchy(report: dict[str, Any]) -> list[TableSpec]:
    sections = {n: h.get("hierarchy") for n, h in _heads(report).items()}
    if not any(sections.values()):
        return []
    first = next(s for s in sections.values() if s)
    caption = f"Mistake severity in {first['source']} (height {first['height']}; LCA heights, lower is better)"
    return [(caption, ["metric", *sections], hierarchy_rows(sections))]


def _ood(report: dict[str, Any]) -> list[TableSpec]:
    rows = ood_rows(report)
    return [("Out-of-distribution detection (OOD is the positive class)", OOD_COLS, rows)] if rows else []


def _shift(report: dict[str, Any]) -> list[TableSpec]:
    out = []
    for head, h in _heads(report).items():
        if not h.get("shift"):
            continue
        sevs = sorted({r["severity"] for r in h["shift"]})
        corr = list(dict.fromkeys(r["corruption"] for r in h["shift"]))
        at = {(r["corruption"], r["severity"]): r for r in h["shift"]}
        rows = [
            [c] + [f"{at[c, s]['accuracy']:.3f} / {at[c, s]['ece']:.3f}" if (c, s) in at else "-" for s in sevs]
            for c in corr
        ]
        rows += [
            ["mean"] + [f"{h['shift_mean'][f'severity_{s}']['accuracy']:.3f} / "
                        f"{h['shift_mean'][f'severity_{s}']['ece']:.3f}" for s in sevs]
        ]  # fmt: skip
        cols = ["corruption"] + [f"severity {s}: acc. / ECE" for s in sevs]
        out.append((f"Under corruption ({head})", cols, rows))
    return out


def _adversarial(report: dict[str, Any]) -> list[TableSpec]:
    rows = [
        [head, r["attack"], f"{r['eps'] * 255:g}/255", f"{r['accuracy']:.4f}", f"{r['ece']:.4f}", f"{r['nll']:.4f}"]
        for head, h in _heads(report).items()
        for r in h.get("adversarial") or []
    ]
    cols = ["head", "attack", "eps (L-inf)", "accuracy", "ECE", "NLL"]
    return [("Under attack (pixel space)", cols, rows)] if rows else []


def _verdicts(report: dict[str, Any]) -> list[TableSpec]:
    rows = [
        [name, against] + [f"{v[k]['verdict']} ({v[k]['delta']:+.4f})" if k in v else "-" for k in VERDICT_METRICS]
        for name, h in report.get("heads", {}).items()
        for against, v in (h.get("verdicts") or {}).items()
        if against != name
    ]
    cols = ["head", "against", *VERDICT_METRICS.values()]
    caption = "Each head against the original and temperature scaling: change on test, 95% paired bootstrap"
    return [(caption, cols, rows)] if rows else []


@dataclass(frozen=True)
class Section:
    key: str  # the HTML anchor
    title: str
    tables: Callable[[dict[str, Any]], list[TableSpec]]
    images: tuple[str, ...] = ()  # file-name prefixes of the images shown in this section


SECTIONS: list[Section] = [
    Section("metrics", "Metrics", _metrics),
    Section("verdicts", "Verdicts per head", _verdicts),
    Section("reliability", "Reliability", _reliability, ("reliability", "smooth")),
    Section("selective", "Risk and coverage", _selective, ("risk_coverage",)),
    Section("per-class", "Per class", _per_class, ("confusion",)),
    Section("hierarchy", "Mistake severity", _hierarchy),
    Section("ood", "Out-of-distribution detection", _ood, ("ood_",)),
    Section("shift", "Distribution shift", _shift, ("shift",)),
    Section("adversarial", "Adversarial robustness", _adversarial, ("adversarial",)),
]


def _layout(report: dict[str, Any], images: dict[str, bytes]) -> list[tuple[Section, list[TableSpec], list[str]]]:
    """The sections that have something to show: (section, its tables, its image names)."""
    used: set[str] = set()
    out = []
    for s in SECTIONS:
        names = [n for n in images if n not in used and any(n.startswith(p) for p in s.images)]
        used.update(names)
        tables = [t for t in s.tables(report) if t[2]]
        if tables or names:
            out.append((s, tables, names))
    if rest := [n for n in images if n not in used]:
        out.append((Section("figures", "Other figures", lambda r: []), [], rest))
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

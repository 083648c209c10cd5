"""The metrics: one value column (audit) or one per head (retrain), then smooth ECE, the confidence-accuracy
gap and selective accuracy, then the hierarchy metrics when the report has them."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table

from vcal_cli.metrics import LOWER_IS_BETTER, METRIC_NAMES
from vcal_cli.reports.sections.base import Report, Section, TableSpec, fmt_ci, register_section
from vcal_cli.reports.tables import hier_label, hierarchy_rows, metric_label, readable


def extra_rows(d: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Smooth ECE and selective accuracy (no intervals) from a head's `details`."""
    if not d:
        return []
    rows = [("Smooth ECE", f"{d['smooth']['smece']:.4f}"), ("Conf. - acc. gap", f"{d['gap']:+.4f}")]
    rows += [(f"Sel. accuracy @{float(k.split('_')[1]):.0%}", f"{v:.4f}") for k, v in d["selective"].items()]
    return rows


def metric_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the metrics table."""
    bins = report["settings"].get("bins", 15)
    if "heads" not in report:
        deb = report.get("debiased") or {}
        rows = [
            [
                metric_label(n, bins),
                f"{report['metrics'][n]:.4f}",
                f"{deb[n]['debiased']:.4f}" if n in deb else "-",
                fmt_ci(report["intervals"].get(n)),
            ]
            for n in METRIC_NAMES
        ]
        d = report.get("details")
        for label, v in extra_rows(d):
            iv = d.get("gap_interval") if d and label.startswith("Conf.") else None
            rows.append([label, v, "-", fmt_ci(iv)])
        if h := report.get("hierarchy"):
            rows += [
                [hier_label(m), "-" if v is None else f"{v:.4f}", "-", fmt_ci(h["intervals"].get(m))]
                for m, v in h["metrics"].items()
            ]
        return ["metric", "value", "debiased", "95% interval"], rows
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


def _tables(report: Report) -> list[TableSpec]:
    cols, rows = metric_rows(report)
    caption = "Metrics on the test split (95% intervals; the ECEs' around their debiased value)"
    return [(caption, cols, rows)]


def audit_table(report: Report) -> Table:
    ck, data, s = report["checkpoint"], report["data"], report["settings"]
    where = ck.get("path") or "precomputed logits"
    if ck.get("head_file"):
        where += f" + head {ck['head_file']}"
    title = f"{where}  on  {data['name']}:{data['split']}  (n={data['n']})"
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("debiased", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("", justify="left")
    deb = report.get("debiased") or {}
    for name in METRIC_NAMES:
        v = report["metrics"][name]
        lo, hi = report["intervals"].get(name, (None, None))
        ci = f"[{lo:.4f}, {hi:.4f}]" if lo is not None else "-"
        t.add_row(
            metric_label(name, s.get("bins", 15)),
            f"{v:.4f}",
            f"{deb[name]['debiased']:.4f}" if name in deb else "-",
            ci,
            "lower is better" if LOWER_IS_BETTER[name] else "higher is better",
        )
    return readable(t)


def retrain_table(report: Report) -> Table:
    """One column per head, green where a head is better than the original and red where worse."""
    heads, s = report["heads"], report["settings"]
    shown = "; 95% intervals below each value" if any(h["intervals"] for h in heads.values()) else ""
    t = Table(
        title=f"{report['checkpoint'].get('path')}  on  {report['data']['name']}:test  "
        f"(n={report['data']['n']}{shown})",
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


def _terminal(report: Report) -> list[RenderableType]:
    return [retrain_table(report) if "heads" in report else audit_table(report)]


register_section(Section(key="metrics", title="Metrics", tables=_tables, terminal=_terminal, order=10))

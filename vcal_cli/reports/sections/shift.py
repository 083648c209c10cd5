"""Distribution shift: accuracy and ECE under each corruption and severity, and their means per severity."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from vcal_cli.reports.figures import plot_shift, to_png
from vcal_cli.reports.sections.base import Raw, Report, Section, TableSpec, heads_of, register_section, rich_table


def means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """`shift_mean`: mean accuracy, NLL and ECE over corruptions per severity (`shift_mean.severity_5.ece`)."""
    out = {}
    for s in sorted({r["severity"] for r in rows}):
        sel = [r for r in rows if r["severity"] == s]
        out[f"severity_{s}"] = {k: sum(r[k] for r in sel) / len(sel) for k in ("accuracy", "nll", "ece")}
    return out


def _tables(report: Report) -> list[TableSpec]:
    out = []
    for head, h in heads_of(report).items():
        if not h.get("shift"):
            continue
        sevs = sorted({r["severity"] for r in h["shift"]})
        corr = list(dict.fromkeys(r["corruption"] for r in h["shift"]))
        at = {(r["corruption"], r["severity"]): r for r in h["shift"]}
        mean = means(h["shift"])
        rows = [
            [c] + [f"{at[c, s]['accuracy']:.3f} / {at[c, s]['ece']:.3f}" if (c, s) in at else "-" for s in sevs]
            for c in corr
        ]
        rows += [
            ["mean"] + [f"{mean[f'severity_{s}']['accuracy']:.3f} / {mean[f'severity_{s}']['ece']:.3f}" for s in sevs]
        ]
        cols = ["corruption"] + [f"severity {s}: acc. / ECE" for s in sevs]
        out.append((f"Under corruption ({head})", cols, rows))
    return out


def _terminal(report: Report) -> list[RenderableType]:
    shifted = {n: means(h["shift"]) for n, h in heads_of(report).items() if h.get("shift")}
    if not shifted:
        return []
    strengths = report["settings"].get("shift", {}).get("strengths", "CIFAR-10-C")
    title = f"under corruption ({strengths} strengths): mean over corruptions per severity"
    if "heads" not in report:
        rows = [
            [k.split("_")[1], f"{v['accuracy']:.4f}", f"{v['nll']:.4f}", f"{v['ece']:.4f}"]
            for k, v in shifted["original"].items()
        ]
        return [rich_table((title, ["severity", "accuracy", "NLL", "ECE"], rows))]
    first = next(iter(shifted.values()))
    rows = [
        [f"severity {sev.split('_')[1]}: {lab}"] + [f"{m[sev][k]:.4f}" if sev in m else "" for m in shifted.values()]
        for sev in first
        for k, lab in (("accuracy", "accuracy"), ("ece", "ECE"))
    ]
    return [rich_table((title + ", per head", ["figure", *shifted], rows))]


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    shifted = {n: means(h["shift"]) for n, h in heads_of(report).items() if h.get("shift")}
    return {"shift.png": to_png(plot_shift(shifted))} if shifted else {}


register_section(
    Section(
        key="shift",
        title="Distribution shift",
        tables=_tables,
        images=("shift",),
        figures=_figures,
        terminal=_terminal,
        summary=("shift_mean", means),
        order=80,
    )
)

"""Out-of-distribution detection: AUROC, AUPR (OOD and ID positive) and FPR@95%TPR of every detector on every OOD
data set (OOD is the positive class) with bootstrap intervals, each detector's paired verdict against MSP, the
leader's against the runner-up, a ROC picture and the score histograms per set."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from vcal_cli.reports.figures import plot_ood_histograms, plot_ood_roc, to_png
from vcal_cli.reports.sections.base import (
    Raw,
    Report,
    Section,
    TableSpec,
    heads_of,
    register_section,
    rich_table,
)

COLS = ["head", "OOD data", "detector", "AUROC", "AUPR out", "AUPR in", "FPR@95TPR", "AUROC vs MSP"]


def _cell(r: dict[str, Any], m: str) -> str:
    iv = (r.get("intervals") or {}).get(m)
    return f"{r[m]:.4f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")


def _versus(r: dict[str, Any]) -> str:
    if r["score"] == "msp":
        return "baseline"
    v = (r.get("vs_msp") or {}).get("auroc")
    return f"{v['delta']:+.4f} {v['verdict']}" if v else ""


def _rows(report: Report) -> list[list[str]]:
    return [
        [head, r["dataset"], r["score"], *(_cell(r, m) for m in ("auroc", "aupr", "aupr_in", "fpr95")), _versus(r)]
        for head, h in heads_of(report).items()
        for r in h.get("ood") or []
    ]


def _leaders(report: Report) -> list[list[str]]:
    """Per head and set: the AUROC leader against the runner-up, paired."""
    out = []
    for head, h in heads_of(report).items():
        for r in h.get("ood") or []:
            v = r.get("vs_runner_up")
            if v:
                d = v["auroc"]
                iv = f"[{d['interval'][0]:+.4f}, {d['interval'][1]:+.4f}]"
                out.append([head, r["dataset"], r["score"], v["runner_up"], f"{d['delta']:+.4f} {iv}", d["verdict"]])
    return out


def _tables(report: Report) -> list[TableSpec]:
    rows = _rows(report)
    if not rows:
        return []
    title = "Out-of-distribution detection (OOD is the positive class; 95% stratified bootstrap intervals)"
    tables: list[TableSpec] = [(title, COLS, rows)]
    leaders = _leaders(report)
    if leaders:
        cols = ["head", "OOD data", "best (AUROC)", "runner-up", "AUROC difference [95% paired]", "verdict"]
        tables.append(("Best OOD detector against the runner-up", cols, leaders))
    return tables


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`ood_summary`: {dataset: {score: {auroc, aupr, fpr95}}}, for gate rules (`ood_summary.svhn.msp.auroc`)."""
    out: dict[str, Any] = {}
    for r in rows:
        out.setdefault(r["dataset"], {})[r["score"]] = {k: r[k] for k in ("auroc", "aupr", "fpr95")}
    return out


def _terminal(report: Report) -> list[RenderableType]:
    title = "out-of-distribution detection (OOD positive; higher AUROC/AUPR, lower FPR95 are better)"
    if "heads" not in report:
        rows = [r[1:] for r in _rows(report)]
        return [rich_table((title, COLS[1:], rows))] if rows else []
    heads = report["heads"]
    pairs = dict.fromkeys((ds, sc) for h in heads.values() for ds, by in h.get("ood_summary", {}).items() for sc in by)
    rows = [
        [f"{ds} {sc}"] + [f"{x:.4f}" if (x := _get(h, ds, sc)) is not None else "" for h in heads.values()]
        for ds, sc in pairs
    ]
    return [rich_table((title + ": AUROC per head", ["OOD data and score", *heads], rows))] if rows else []


def _get(h: dict[str, Any], ds: str, sc: str) -> float | None:
    return h.get("ood_summary", {}).get(ds, {}).get(sc, {}).get("auroc")


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    images = {}
    rows = {n: h.get("ood") or [] for n, h in heads_of(report).items()}
    for head, r in raw.items():
        for i, (name, scores) in enumerate((r.get("ood_scores") or {}).items()):
            fname = f"ood_{i}.png" if head == "original" else f"ood_{i}_{head}.png"
            label = head if len(raw) > 1 else ""
            images[fname] = to_png(plot_ood_histograms(scores, dataset=name, rows=rows.get(head, []), head=label))
            roc = fname.replace("ood_", "ood_roc_", 1)
            images[roc] = to_png(plot_ood_roc(scores, dataset=name, rows=rows.get(head, []), head=label))
    return images


register_section(
    Section(
        key="ood",
        title="Out-of-distribution detection",
        tables=_tables,
        images=("ood_",),
        figures=_figures,
        terminal=_terminal,
        summary=("ood_summary", summary),
        order=70,
    )
)

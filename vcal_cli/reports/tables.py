"""Rich tables built from report dicts (pure functions: easy to test, no printing)."""

from __future__ import annotations

from typing import Any

from rich.panel import Panel
from rich.table import Table

from vcal_cli.metrics import LOWER_IS_BETTER, METRIC_NAMES
from vcal_cli.reports.schema import shift_means

LABELS = {
    "accuracy": "Accuracy",
    "nll": "NLL",
    "brier": "Brier",
    "ece": "ECE",
    "ece_adaptive": "Adaptive ECE",
    "mce": "MCE",
    "classwise_ece": "Classwise ECE",
    "aurc": "AURC",
}


def readable(t: Table) -> Table:
    """Numbers never shrink to `0…` on a narrow terminal: numeric (right-aligned) columns keep their width,
    text columns fold onto more lines instead of being cut."""
    for col in t.columns:
        if col.justify == "right":
            col.no_wrap, col.overflow = True, "ignore"
        else:
            col.overflow = "fold"
    return t


def metric_label(name: str, n_bins: int) -> str:
    return f"{LABELS[name]}-{n_bins}" if name in ("ece", "ece_adaptive", "mce", "classwise_ece") else LABELS[name]


def audit_table(report: dict[str, Any]) -> Table:
    ck, data, s = report["checkpoint"], report["data"], report["settings"]
    where = ck.get("path") or "precomputed logits"
    if ck.get("head_file"):
        where += f" + head {ck['head_file']}"
    title = f"{where}  on  {data['name']}:{data['split']}  (n={data['n']})"
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("", justify="left")
    for name in METRIC_NAMES:
        v = report["metrics"][name]
        lo, hi = report["intervals"].get(name, (None, None))
        ci = f"[{lo:.4f}, {hi:.4f}]" if lo is not None else "-"
        t.add_row(
            metric_label(name, s.get("bins", 15)),
            f"{v:.4f}",
            ci,
            "lower is better" if LOWER_IS_BETTER[name] else "higher is better",
        )
    return readable(t)


HIER_LABELS = {"top1_error": "Top-1 error", "mistake_severity": "Mistake severity"}


def hier_label(name: str) -> str:
    return HIER_LABELS.get(name) or "Avg. hier. distance @" + name.rsplit("_", 1)[1]


def fmt(v: float | None, iv: list[float] | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" + (f" [{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "")


def hierarchy_rows(sections: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    """Rows metric x section (one column per head or report) of the hierarchy metrics."""
    first = next(s for s in sections.values() if s)
    return [
        [hier_label(m)] + [fmt(s["metrics"][m], s["intervals"].get(m)) if s else "-" for s in sections.values()]
        for m in first["metrics"]
    ]


def hierarchy_table(sections: dict[str, dict[str, Any] | None]) -> Table:
    first = next(s for s in sections.values() if s)
    t = Table(
        title=f"mistake severity in {first['source']} (height {first['height']}; LCA heights, lower is "
        "better; 95% intervals)",
        title_justify="left",
    )
    t.add_column("metric")
    for name in sections:
        t.add_column(name, justify="right")
    for row in hierarchy_rows(sections):
        t.add_row(*row)
    return readable(t)


def ood_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(
        title="out-of-distribution detection (OOD positive; higher AUROC/AUPR, lower FPR95 are better)",
        title_justify="left",
    )
    for col in ("OOD data", "score", "AUROC", "AUPR", "FPR@95TPR"):
        t.add_column(col, justify="right" if col in ("AUROC", "AUPR", "FPR@95TPR") else "left")
    for r in rows:
        t.add_row(r["dataset"], r["score"], f"{r['auroc']:.4f}", f"{r['aupr']:.4f}", f"{r['fpr95']:.4f}")
    return readable(t)


def adversarial_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="under attack (L-inf budgets in pixel units, x 1/255)", title_justify="left")
    for col in ("attack", "eps", "accuracy", "ECE", "NLL"):
        t.add_column(col, justify="left" if col == "attack" else "right")
    for r in rows:
        t.add_row(r["attack"], f"{r['eps'] * 255:g}", f"{r['accuracy']:.4f}", f"{r['ece']:.4f}", f"{r['nll']:.4f}")
    return readable(t)


def shift_table(rows: list[dict[str, Any]], strengths: str = "CIFAR-10-C") -> Table:

    t = Table(
        title=f"under corruption ({strengths} strengths): mean over corruptions per severity", title_justify="left"
    )
    for col in ("severity", "accuracy", "NLL", "ECE"):
        t.add_column(col, justify="right")
    for k, v in shift_means(rows).items():
        t.add_row(k.split("_")[1], f"{v['accuracy']:.4f}", f"{v['nll']:.4f}", f"{v['ece']:.4f}")
    return readable(t)


def robustness_rows(heads: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per robustness figure, one column per head: shift means per severity, attacks per budget, and
    the OOD AUROC of every score (a head's own scores are blank for the others)."""

    def cells(*path: str) -> list[str]:
        out = []
        for h in heads.values():
            node: Any = h
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            out.append(f"{node:.4f}" if isinstance(node, int | float) else "")
        return out

    first = next(iter(heads.values()))
    rows: list[list[str]] = []
    metrics = (("accuracy", "accuracy"), ("ece", "ECE"))
    for sev in first.get("shift_mean", {}):
        rows += [[f"shift {sev.replace('_', ' ')}: {lab}", *cells("shift_mean", sev, m)] for m, lab in metrics]
    for attack, budgets in first.get("adversarial_summary", {}).items():
        for eps in budgets:
            rows += [[f"{attack} {eps}: {lab}", *cells("adversarial_summary", attack, eps, m)] for m, lab in metrics]
    scores: dict[tuple[str, str], None] = {}
    for h in heads.values():
        for ds, by_score in h.get("ood_summary", {}).items():
            scores.update(dict.fromkeys((ds, sc) for sc in by_score))
    rows += [[f"OOD {ds} {sc}: AUROC", *cells("ood_summary", ds, sc, "auroc")] for ds, sc in scores]
    return rows


def robustness_table(heads: dict[str, dict[str, Any]]) -> Table:
    t = Table(title="robustness per head (shift: mean over corruptions; OOD: OOD positive)", title_justify="left")
    t.add_column("figure", no_wrap=True)
    for name in heads:
        t.add_column(name, justify="right")
    for row in robustness_rows(heads):
        t.add_row(*row)
    return readable(t)


def summary_panel(summary: dict[str, Any]) -> Panel:
    """The verdict in words, above every table."""
    verdict = summary.get("verdict") or (f"use {summary['pick']}" if summary.get("pick") else "verdict")
    color = {"over-confident": "red", "under-confident": "yellow", "calibrated within noise": "green"}.get(
        verdict, "cyan"
    )
    return Panel("\n".join(summary.get("lines") or ["(no summary)"]), title=verdict, title_align="left",
                 border_style=color, expand=False)  # fmt: skip


def per_class_rows(details: dict[str, Any], names: list[str] | None, top: int | None = None) -> list[list[str]]:
    """The per-class table, worst classwise ECE first: class, count, accuracy, mean confidence, ECE."""
    rows = details.get("per_class") or []
    return [
        [names[r["index"]] if names else str(r["index"]), str(r["count"]), f"{r['accuracy']:.4f}",
         f"{r['confidence']:.4f}", f"{r['ece']:.4f}"]
        for r in rows[:top]
    ]  # fmt: skip


PER_CLASS_COLS = ["class", "n", "accuracy", "mean confidence", "ECE (one-vs-rest)"]

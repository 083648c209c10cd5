"""Adversarial robustness: accuracy, ECE and NLL under FGSM and PGD at each L-inf budget."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from vcal_cli.reports.figures import plot_adversarial, to_png
from vcal_cli.reports.sections.base import Raw, Report, Section, TableSpec, heads_of, register_section, rich_table


def eps_key(eps: float) -> str:
    """A budget as report keys spell it: 8/255."""
    return f"{round(eps * 255, 4):g}/255"


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`adversarial_summary`: {attack: {"8/255": {accuracy, ece, nll}}} (`adversarial_summary.pgd.8/255.ece`)."""
    out: dict[str, Any] = {}
    for r in rows:
        out.setdefault(r["attack"], {})[eps_key(r["eps"])] = {k: r[k] for k in ("accuracy", "ece", "nll")}
    return out


def _tables(report: Report) -> list[TableSpec]:
    rows = [
        [head, r["attack"], f"{r['eps'] * 255:g}/255", f"{r['accuracy']:.4f}", f"{r['ece']:.4f}", f"{r['nll']:.4f}"]
        for head, h in heads_of(report).items()
        for r in h.get("adversarial") or []
    ]
    cols = ["head", "attack", "eps (L-inf)", "accuracy", "ECE", "NLL"]
    return [("Under attack (pixel space)", cols, rows)] if rows else []


def _terminal(report: Report) -> list[RenderableType]:
    attacked = {n: h["adversarial"] for n, h in heads_of(report).items() if h.get("adversarial")}
    if not attacked:
        return []
    title = "under attack (L-inf budgets in pixel units, x 1/255)"
    if "heads" not in report:
        rows = [
            [r["attack"], f"{r['eps'] * 255:g}", f"{r['accuracy']:.4f}", f"{r['ece']:.4f}", f"{r['nll']:.4f}"]
            for r in attacked["original"]
        ]
        return [rich_table((title, ["attack", "eps", "accuracy", "ECE", "NLL"], rows))]
    keyed = {n: summary(rows) for n, rows in attacked.items()}
    first = next(iter(keyed.values()))
    rows = [
        [f"{attack} {eps}: {lab}"]
        + [f"{k[attack][eps][m]:.4f}" if eps in k.get(attack, {}) else "" for k in keyed.values()]
        for attack, budgets in first.items()
        for eps in budgets
        for m, lab in (("accuracy", "accuracy"), ("ece", "ECE"))
    ]
    return [rich_table((title + ", per head", ["figure", *keyed], rows))]


def _figures(report: Report, raw: Raw) -> dict[str, bytes]:
    attacked = {n: h["adversarial"] for n, h in heads_of(report).items() if h.get("adversarial")}
    return {"adversarial.png": to_png(plot_adversarial(attacked))} if attacked else {}


register_section(
    Section(
        key="adversarial",
        title="Adversarial robustness",
        tables=_tables,
        images=("adversarial",),
        figures=_figures,
        terminal=_terminal,
        summary=("adversarial_summary", summary),
        order=90,
    )
)

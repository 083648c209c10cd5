"""Figures: data in, matplotlib Figure out (Agg backend, object API)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.patches
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from vcal_cli.metrics import ReliabilityBin


def plot_reliability(
    bins: Sequence[ReliabilityBin],
    *,
    ece: float | None = None,
    title: str = "",
    label: str = "Output",
    bands: Sequence[Sequence[float] | None] | None = None,
) -> Figure:
    """Reliability diagram (accuracy bars, gap bars to the diagonal) over a confidence histogram; with `bands`
    (per bin, where a calibrated model's bin accuracy falls 95% of the time) the consistency band on top."""
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(6, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0].hi - bins[0].lo
    centers = [(b.lo + b.hi) / 2 for b in bins]
    acc = [b.accuracy or 0.0 for b in bins]
    conf = [b.confidence if b.confidence is not None else c for b, c in zip(bins, centers, strict=True)]
    filled = [b.count > 0 for b in bins]
    colors = ["#1f77b4" if b.count >= SMALL_BIN else "#b8cfe6" for b in bins]
    ax.bar(centers, acc, width=width, color=colors, edgecolor="black", linewidth=0.6, label=label)
    for b, c in zip(bins, centers, strict=True):
        if 0 < b.count < SMALL_BIN:  # too few samples for the bar to mean much
            ax.text(c, 0.02, f"n={b.count}", rotation=90, fontsize=7, ha="center", va="bottom", color="#555")
    gaps = [(c - a) if f else 0.0 for a, c, f in zip(acc, conf, filled, strict=True)]
    ax.bar(
        centers,
        gaps,
        bottom=acc,
        width=width,
        color="#d62728",
        alpha=0.45,
        edgecolor="#d62728",
        hatch="//",
        linewidth=0.6,
        label="Gap (confidence - accuracy)",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="Perfect calibration")
    if bands:
        _draw_bands(ax, bins, bands, width)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy", title=title or "Reliability diagram")
    if ece is not None:
        ax.text(
            0.04,
            0.96,
            f"ECE = {ece:.4f}",
            transform=ax.transAxes,
            fontsize=12,
            va="top",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "grey"},
        )
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.86), fontsize=8)
    counts = [b.count for b in bins]
    total = max(1, sum(counts))
    hx.bar(centers, [c / total for c in counts], width=width, color="#7f7f7f", edgecolor="black", linewidth=0.6)
    mean_conf = sum(b.confidence * b.count for b in bins if b.count) / total
    mean_acc = sum(b.accuracy * b.count for b in bins if b.count) / total
    hx.axvline(mean_acc, color="black", linestyle="-", linewidth=1.2, label=f"accuracy {mean_acc:.3f}")
    hx.axvline(mean_conf, color="#d62728", linestyle="--", linewidth=1.2, label=f"avg. confidence {mean_conf:.3f}")
    hx.set(xlabel="Confidence (top-label)", ylabel="Fraction", xlim=(0, 1))
    hx.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


SMALL_BIN = 20  # bins with fewer samples are drawn pale and labelled with their count
BAND_COLOR = "#2ca02c"


def _draw_bands(ax: Any, bins: Sequence[ReliabilityBin], bands: Sequence[Sequence[float] | None], width: float) -> None:
    """Green boxes: where a calibrated model's bin accuracy falls (95%); a bar outside its box is off beyond noise."""
    first = True
    for b, band in zip(bins, bands, strict=True):
        if not band or not b.count:
            continue
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (b.lo + 0.15 * width, band[0]),
                0.7 * width,
                max(band[1] - band[0], 0.004),
                facecolor=BAND_COLOR,
                alpha=0.35,
                edgecolor=BAND_COLOR,
                linewidth=1.0,
                zorder=3,
                label="95% band of a calibrated model" if first else None,
            )
        )
        first = False


def plot_corp(curve: dict[str, list[float]], *, title: str = "", score: float | None = None) -> Figure:
    """CORP reliability diagram (Dimitriadis et al. 2021): the isotonic (PAV) recalibration of the outcomes on
    the confidences, with the band where a calibrated model's PAV curve falls 95% of the time."""
    fig, ax = plt.subplots(figsize=(6, 5.4))
    x = curve["confidence"]
    ax.fill_between(
        x,
        curve["band_low"],
        curve["band_high"],
        color=BAND_COLOR,
        alpha=0.3,
        linewidth=0,
        label="95% band of a calibrated model",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="Perfect calibration")
    ax.step(x, curve["accuracy"], where="mid", color="#1f77b4", linewidth=2, label="CORP (isotonic) accuracy")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="Confidence (top-label)",
        ylabel="Accuracy given confidence",
        title=title or "CORP reliability diagram",
    )
    if score is not None:
        ax.text(
            0.04,
            0.96,
            f"CORP ECE = {score:.4f}",
            transform=ax.transAxes,
            fontsize=11,
            va="top",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "grey"},
        )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _panels(n: int, size: float) -> tuple[Figure, Any]:
    """Small multiples: up to three square panels a row, shared axes, the unused ones hidden."""
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def plot_smooth_reliability(curves: dict[str, dict], *, title: str = "") -> Figure:
    """Kernel-smoothed reliability curves (Blasiok & Nakkiran's smooth ECE), one small panel per head, with the
    confidence density below each curve as a shaded band. `curves[name]` holds confidence, accuracy, density
    (report.json's `details.smooth_curve`) and `smece`, `sigma`."""
    fig, axes = _panels(len(curves), 4.2)
    for ax, (name, c) in zip(axes.flat, curves.items(), strict=False):
        x, acc, dens = c["confidence"], c["accuracy"], c["density"]
        top = max(dens) or 1.0
        ax.fill_between(x, 0, [0.25 * d / top for d in dens], color="#7f7f7f", alpha=0.3, lw=0, label="density")
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        # drawn only where the samples are (1% of the density's peak): elsewhere the kernel regression is empty
        shown = [a if d >= 0.01 * top else float("nan") for a, d in zip(acc, dens, strict=True)]
        ax.plot(x, shown, color="#d62728", lw=2, label=f"smooth ECE {c['smece']:.4f}")
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name} (bandwidth {c['sigma']:.3f})")
        ax.legend(loc="upper left", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("Confidence (top-label)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Accuracy (kernel regression)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reliability_grid(curves: dict[str, tuple[Sequence[ReliabilityBin], float]], *, title: str = "") -> Figure:
    """Small multiples: one binned reliability panel per head, bins under SMALL_BIN samples drawn pale."""
    fig, axes = _panels(len(curves), 4.0)
    for ax, (name, (bins, ece)) in zip(axes.flat, curves.items(), strict=False):
        width = bins[0].hi - bins[0].lo
        centers = [(b.lo + b.hi) / 2 for b in bins]
        colors = ["#1f77b4" if b.count >= SMALL_BIN else "#b8cfe6" for b in bins]
        ax.bar(centers, [b.accuracy or 0.0 for b in bins], width=width, color=colors, edgecolor="black", lw=0.5)
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name}: ECE {ece:.4f}")
    for ax in axes[-1]:
        ax.set_xlabel("Confidence")
    for ax in axes[:, 0]:
        ax.set_ylabel("Accuracy")
    fig.suptitle(title or f"Reliability per head (pale: bins under {SMALL_BIN} samples)")
    fig.tight_layout()
    return fig


def plot_risk_coverage(curves: dict[str, list], *, title: str = "") -> Figure:
    """Selective risk (error among the most confident) against coverage, one line per head."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, pts) in enumerate(curves.items()):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, color=f"C{i}", lw=1.6, ls=["-", "--", "-.", ":"][i % 4], label=name)
    for c in (0.9, 0.95, 0.99):
        ax.axvline(c, color="#bbb", lw=0.8, zorder=0)
    ax.set(
        xlim=(0, 1),
        ylim=(0, None),
        xlabel="Coverage (fraction of samples kept, most confident first)",
        ylabel="Selective risk (error rate)",
        title=title or "Risk-coverage",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: list[list[int]], names: list[str] | None = None, *, title: str = "") -> Figure:
    """The confusion matrix, rows normalised (true class), log-ish colour so rare mistakes stay visible."""
    m = np.asarray(matrix, dtype=float)
    k = len(m)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = min(12.0, 3 + 0.35 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", norm=PowerNorm(0.4, vmin=0, vmax=1))
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    labels = names if names and len(names) == k else [str(i) for i in range(k)]
    if k <= 30:
        ax.set_xticks(range(k), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(m[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix")
    fig.tight_layout()
    return fig


def to_png(fig: Figure, dpi: int = 120) -> bytes:
    """PNG bytes of a figure; the figure is closed afterwards."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_reliability_overlay(curves: dict[str, tuple[Sequence[ReliabilityBin], float]], *, title: str = "") -> Figure:
    """Reliability curves (accuracy against mean confidence per non-empty bin) of several heads on one axis."""
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="Perfect calibration")
    for name, (bins, ece) in curves.items():
        pts = [(b.confidence, b.accuracy, b.count) for b in bins if b.count]
        xs, ys, ns = zip(*pts, strict=True) if pts else ((), (), ())
        (line,) = ax.plot(xs, ys, "-o", markersize=3, linewidth=1.5, label=f"{name} (ECE {ece:.4f})")
        total = max(1, sum(ns))
        ax.scatter(xs, ys, s=[400 * n / total for n in ns], color=line.get_color(), alpha=0.25)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="Confidence (top-label)",
        ylabel="Accuracy",
        title=title or "Reliability: original and retrained heads",
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_ood_histograms(scores: dict[str, tuple], *, dataset: str, rows: list[dict], head: str = "") -> Figure:
    """In- against out-of-distribution score histograms, one panel per score (higher = more OOD)."""
    cols = 3
    n_rows = -(-len(scores) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(12, 3.3 * n_rows), squeeze=False)
    for ax in axes.flat[len(scores) :]:
        ax.axis("off")
    for ax, (name, (id_s, ood_s)) in zip(axes.flat, scores.items(), strict=False):
        lo, hi = float(min(id_s.min(), ood_s.min())), float(max(id_s.max(), ood_s.max()))
        bins = [lo + (hi - lo) * i / 40 for i in range(41)] if hi > lo else 10
        ax.hist(id_s.numpy(), bins=bins, alpha=0.6, density=True, label="in-distribution (test)", color="#1f77b4")
        ax.hist(ood_s.numpy(), bins=bins, alpha=0.6, density=True, label=f"OOD: {dataset}", color="#d62728")
        auc = next((r["auroc"] for r in rows if r["score"] == name and r["dataset"] == dataset), None)
        ax.set(title=f"{name} (AUROC {auc:.3f})" if auc is not None else name, xlabel="score (higher = more OOD)")
        ax.legend(fontsize=7)
    if head:
        fig.suptitle(f"head: {head}")
    fig.tight_layout()
    return fig


def plot_ood_roc(scores: dict[str, tuple], *, dataset: str, rows: list[dict], head: str = "") -> Figure:
    """ROC curves of every score on one OOD set (OOD positive), the legend with each AUROC and its interval."""
    fig, ax = plt.subplots(figsize=(5.6, 5))
    by = {r["score"]: r for r in rows if r["dataset"] == dataset}
    ranked = sorted(scores.items(), key=lambda kv: -by.get(kv[0], {}).get("auroc", 0))
    for i, (name, (id_s, ood_s)) in enumerate(ranked):
        s = np.r_[np.asarray(id_s, dtype=np.float64), np.asarray(ood_s, dtype=np.float64)]
        y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))][np.argsort(-s, kind="stable")]
        tpr = np.r_[0.0, y.cumsum() / len(ood_s)]
        fpr = np.r_[0.0, (1 - y).cumsum() / len(id_s)]
        r = by.get(name, {})
        label = name
        if "auroc" in r:
            lo_hi = r.get("intervals", {}).get("auroc")
            label += f" {r['auroc']:.3f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")
        ax.plot(fpr, tpr, color=f"C{i % 10}", ls="-" if i < 10 else "--", lw=1.4, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
    ax.axhline(0.95, color="0.6", lw=0.8, ls="--")
    kind, _, where = dataset.partition(":")  # npz:/a/long/path/set.npz -> npz:set.npz, so the title fits
    shown = f"{kind}:{Path(where).name}" if where else dataset
    title = f"ROC, OOD: {shown}" + (f" (head: {head})" if head else "")
    ax.set(xlabel="false-positive rate (in-distribution flagged)", ylabel="true-positive rate (OOD flagged)")
    ax.set(title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, title="AUROC [95% interval]", title_fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_adversarial(rows_by_head: dict[str, list[dict]]) -> Figure:
    """Accuracy and ECE against the attack budget: one colour per head, solid PGD, dashed FGSM."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (head, rows) in enumerate(rows_by_head.items()):
        for attack in dict.fromkeys(r["attack"] for r in rows):
            pts = sorted((r["eps"] * 255, r["accuracy"], r["ece"]) for r in rows if r["attack"] == attack)
            xs, acc, ece = zip(*pts, strict=True)
            pgd = attack == "pgd"
            style = dict(color=f"C{i}", ls="-" if pgd else "--", marker="o" if pgd else "s", ms=4)
            label = f"{head}: {attack}" if len(rows_by_head) > 1 else attack
            a1.plot(xs, acc, label=label, **style)
            a2.plot(xs, ece, label=label, **style)
    a1.set(xlabel="eps (x 1/255)", ylabel="accuracy", title="Accuracy under attack", ylim=(0, 1))
    a2.set(xlabel="eps (x 1/255)", ylabel="ECE", title="ECE under attack")
    for ax in (a1, a2):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_shift(means_by_head: dict[str, dict[str, dict[str, float]]]) -> Figure:
    """Mean accuracy and ECE over corruptions against severity, one line per head."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (head, means) in enumerate(means_by_head.items()):
        sev = [int(k.split("_")[1]) for k in means]
        a1.plot(sev, [v["accuracy"] for v in means.values()], "-o", color=f"C{i}", label=head)
        a2.plot(sev, [v["ece"] for v in means.values()], "-o", color=f"C{i}", label=head)
    a1.set(xlabel="severity", ylabel="accuracy", title="Accuracy under corruption (mean)", ylim=(0, 1))
    a2.set(xlabel="severity", ylabel="ECE", title="ECE under corruption (mean)")
    for ax in (a1, a2):
        ax.set_xticks(sev)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_frontier(rows: list[dict]) -> Figure:
    """The rate-classification curve coloured by test ECE, distortion against rate, and ECE (with accuracy on a
    second axis) against beta; one line per lambda, the selected point ringed."""
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.3))
    lams = list(dict.fromkeys(r["lam"] for r in rows))
    eces = [r["test_ece"] for r in rows]
    norm = plt.Normalize(min(eces), max(eces) if max(eces) > min(eces) else min(eces) + 1e-9)
    for i, lam in enumerate(lams):
        pts = sorted((r for r in rows if r["lam"] == lam), key=lambda r: r["beta"])
        label = f"lambda={lam:g}"
        a1.plot(
            [r["rate"] for r in pts], [r["classification"] for r in pts], "-", color=f"C{i}", alpha=0.5, label=label
        )
        sc = a1.scatter(
            [r["rate"] for r in pts],
            [r["classification"] for r in pts],
            c=[r["test_ece"] for r in pts],
            cmap="viridis",
            norm=norm,
            zorder=3,
        )
        a2.plot([r["rate"] for r in pts], [r["distortion"] for r in pts], "-o", color=f"C{i}", label=label)
        xs = [r["beta"] for r in pts]
        a3.plot(xs, [r["test_ece"] for r in pts], "-o", color=f"C{i}", label=f"ECE, {label}")
    fig.colorbar(sc, ax=a1, label="test ECE")
    sel = next((r for r in rows if r.get("selected")), None)
    if sel is not None:
        ring = dict(s=160, facecolors="none", edgecolors="red", linewidths=2, zorder=4, label="selected")
        a1.scatter([sel["rate"]], [sel["classification"]], **ring)
        a2.scatter([sel["rate"]], [sel["distortion"]], **ring)
        a3.scatter([sel["beta"]], [sel["test_ece"]], **ring)
    a1.set(xlabel="rate R (nats)", ylabel="classification loss C (nats)", title="Rate-classification curve")
    a2.set(xlabel="rate R (nats)", ylabel="distortion D (nats)", title="Distortion against rate")
    positive = [r["beta"] for r in rows if r["beta"] > 0]
    if len(positive) == len(rows):
        a3.set_xscale("log")
    elif positive:  # beta = 0 on a log-like axis
        a3.set_xscale("symlog", linthresh=min(positive))
    a3.set(xlabel="beta (weight of R)", ylabel="test ECE", title="ECE and accuracy against beta")
    twin = a3.twinx()
    for i, lam in enumerate(lams):
        pts = sorted((r for r in rows if r["lam"] == lam), key=lambda r: r["beta"])
        twin.plot(
            [r["beta"] for r in pts],
            [r["test_accuracy"] for r in pts],
            "--s",
            color=f"C{i}",
            alpha=0.6,
            ms=4,
            label=f"accuracy, lambda={lam:g}",
        )
    twin.set_ylabel("test accuracy (dashed)")
    for ax in (a1, a2):
        ax.legend(fontsize=7)
    a3.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_conformal(rows_by_head: dict[str, dict[str, Any]], class_names: Sequence[str] | None = None) -> Figure:
    """Prediction sets of one score and alpha: the set-size histogram and coverage per class against 1 - alpha, one
    colour per head."""
    first = next(iter(rows_by_head.values()))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = first["size_histogram"]["sizes"]
    width = 0.8 / len(rows_by_head)
    for i, (head, r) in enumerate(rows_by_head.items()):
        counts = np.asarray(r["size_histogram"]["counts"], dtype=float)
        a1.bar(np.arange(len(counts)) + i * width, counts / max(counts.sum(), 1), width, color=f"C{i}", label=head)
        if r.get("per_class_coverage"):
            cov = r["per_class_coverage"]
            a2.plot(range(len(cov)), cov, "o", color=f"C{i}", ms=4, label=head)
    a1.set_xticks(np.arange(len(labels)) + width * (len(rows_by_head) - 1) / 2, labels, fontsize=7)
    a1.set(
        xlabel="set size",
        ylabel="share of test examples",
        title=f"Set sizes ({first['score']}, 1 - alpha = {first['target']:.2f})",
    )
    a2.axhline(first["target"], color="#444", ls="--", lw=1, label="1 - alpha")
    k = len(first.get("per_class_coverage") or [])
    if k:
        names = list(class_names or range(k))[:k]
        a2.set_xticks(range(k), [str(n) for n in names], rotation=60 if k > 10 else 0, fontsize=7, ha="right")
    else:
        a2.text(
            0.5, 0.5, "more than 100 classes: see the worst class in the table", ha="center", transform=a2.transAxes
        )
    a2.set(ylabel="coverage", ylim=(0, 1.02), title="Coverage per class")
    for ax in (a1, a2):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

"""What a person reads next to the headline metrics: the confidence gap, smooth ECE, selective accuracy and
the risk-coverage curve, and one row per class (with the confusion matrix for up to 100 classes).

All of it comes from the per-sample values of one pass over the scores (`conf`, `correct`, `pred`) and the
per-class classwise-ECE slots, so it costs no second read of the (N, K) scores. Only the gap
(mean confidence minus accuracy, > 0: over-confident) carries a bootstrap interval (the gap -/+ 1.96 sd of its
resamples, from the same resample counts as the metrics).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from vcal_cli.metrics.inference import NORMAL, normal_interval
from vcal_cli.metrics.smooth import SmoothCurve, smooth_curve

COVERAGES = (0.90, 0.95, 0.99)
CONFUSION_MAX_CLASSES = 100
CURVE_POINTS = 101


@dataclass(frozen=True, kw_only=True)
class ClassRow:
    index: int
    count: int  # test samples of this class
    accuracy: float  # recall: of this class's samples, the fraction classified right
    confidence: float  # mean top-label confidence on this class's samples
    ece: float  # this class's binary ECE of p[:, c] against 1[y = c] (its share of classwise ECE x K)


@dataclass(frozen=True, kw_only=True)
class Details:
    gap: float  # mean confidence - accuracy: > 0 over-confident, < 0 under-confident
    gap_interval: tuple[float, float] | None
    smooth: SmoothCurve  # smooth ECE and its kernel reliability curve
    selective: dict[str, float]  # 'coverage_0.90' -> accuracy of the 90% most confident samples
    risk_coverage: list[tuple[float, float]]  # (coverage, selective risk) at CURVE_POINTS coverages
    per_class: list[ClassRow]  # worst classwise ECE first
    confusion: list[list[int]] | None  # [true][predicted] counts, for <= CONFUSION_MAX_CLASSES classes
    top_confusions: list[dict[str, Any]] = field(default_factory=list)  # the most frequent mistakes, any K

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["smooth"] = {"smece": self.smooth.smece, "sigma": self.smooth.sigma}
        d["smooth_curve"] = {k: getattr(self.smooth, k) for k in ("confidence", "accuracy", "density")}
        d["gap_interval"] = list(self.gap_interval) if self.gap_interval else None
        d["risk_coverage"] = [list(p) for p in self.risk_coverage]
        return d


def selective_risks(conf: Tensor, correct: Tensor) -> Tensor:
    """(N,): the error rate of the k most confident samples (stable descending order), for k = 1..N."""
    order = torch.sort(conf, descending=True, stable=True).indices
    return (1 - correct[order].double()).cumsum(0) / torch.arange(1, len(conf) + 1, dtype=torch.float64)


def selective_accuracy(conf: Tensor, correct: Tensor, coverage: float, risks: Tensor | None = None) -> float:
    """Accuracy of the ceil(coverage * N) most confident samples (`risks`: `selective_risks`, if at hand)."""
    risks = selective_risks(conf, correct) if risks is None else risks
    k = max(1, math.ceil(coverage * len(conf) - 1e-9))
    return 1.0 - float(risks[k - 1])


def risk_coverage(
    conf: Tensor, correct: Tensor, points: int = CURVE_POINTS, risks: Tensor | None = None
) -> list[tuple[float, float]]:
    """Selective risk (error among the k most confident) at `points` coverages k/N from 1/N to 1."""
    n = len(conf)
    risks = selective_risks(conf, correct) if risks is None else risks
    ks = torch.linspace(1, n, min(points, n)).round().long().unique()
    return [(int(k) / n, float(risks[k - 1])) for k in ks]


def class_rows(stats: dict[str, Tensor], labels: Tensor, class_ece: Tensor) -> list[ClassRow]:
    k = len(class_ece)
    count = torch.bincount(labels, minlength=k).double()
    hits = torch.bincount(labels, weights=stats["correct"], minlength=k)
    conf = torch.bincount(labels, weights=stats["conf"], minlength=k)
    safe = count.clamp_min(1)
    rows = [
        ClassRow(
            index=c,
            count=int(count[c]),
            accuracy=float(hits[c] / safe[c]),
            confidence=float(conf[c] / safe[c]),
            ece=float(class_ece[c]),
        )
        for c in range(k)
    ]
    return sorted(rows, key=lambda r: (-r.ece, r.index))


TOP_CONFUSIONS = 20


def top_confusions(labels: Tensor, pred: Tensor, k: int, top: int = TOP_CONFUSIONS) -> list[dict[str, Any]]:
    """The `top` most frequent mistakes as {true, predicted, count, share} (share: of the true class's samples),
    most frequent first (ties: lower true, then predicted index): readable at any class count, where a K x K
    matrix is not."""
    labels = labels.long()
    wrong = labels != pred.long()
    if not bool(wrong.any()):
        return []
    pairs = labels[wrong] * k + pred.long()[wrong]
    uniq, counts = torch.unique(pairs, return_counts=True)  # sorted by pair: the stable sort keeps ties in order
    order = torch.sort(-counts, stable=True).indices[:top]
    per_class = torch.bincount(labels, minlength=k)
    out = []
    for i in order.tolist():
        t, p = divmod(int(uniq[i]), k)
        out.append({"true": t, "predicted": p, "count": int(counts[i]), "share": float(counts[i]) / int(per_class[t])})
    return out


def confusion(labels: Tensor, pred: Tensor, k: int) -> list[list[int]] | None:
    if k > CONFUSION_MAX_CLASSES:
        return None
    return torch.bincount(labels * k + pred.long(), minlength=k * k).view(k, k).tolist()


GAP_INTERVAL = f"{NORMAL}, clipped to [-1, 1]"  # report.json settings.intervals.gap


def details(stats: dict[str, Tensor], labels: Tensor, class_ece: Tensor, counts: Tensor) -> Details:
    """From one pass's per-sample values (`conf`, `correct`, `pred`), the per-class binary ECEs (K,) and the
    resample counts (1 + R, N) of the metrics' bootstrap."""
    conf, correct = stats["conf"], stats["correct"]
    n = len(conf)
    gaps = counts.double() @ (conf - correct) / n  # (1 + R,)
    interval = normal_interval(float(gaps[0]), gaps[1:], -1.0, 1.0)
    risks = selective_risks(conf, correct)  # one sort serves the selective accuracies and the curve
    return Details(
        gap=float(gaps[0]),
        gap_interval=interval,
        smooth=smooth_curve(conf, correct),
        selective={f"coverage_{c:.2f}": selective_accuracy(conf, correct, c, risks) for c in COVERAGES},
        risk_coverage=risk_coverage(conf, correct, risks=risks),
        per_class=class_rows(stats, labels, class_ece),
        confusion=confusion(labels, stats["pred"], len(class_ece)),
        top_confusions=top_confusions(labels, stats["pred"], len(class_ece)),
    )

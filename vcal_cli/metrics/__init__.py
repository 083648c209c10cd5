"""Calibration and accuracy metrics, named by their report keys.

All computation is in float64 on the CPU. Definitions (see the README for the conventions):

- accuracy: mean of argmax == label (ties go to the lowest class index).
- nll: mean negative log-likelihood, log-softmax of the logits (probabilities: log(max(p, 1e-7))).
- brier: mean over samples of the sum over classes of (p - onehot)^2, in [0, 2].
- ece: top-label, equal-width bins [lo, hi) with the last closed at 1.0, sum_b (n_b/N) |acc_b - conf_b|.
- ece_adaptive: the same over equal-count bins from a stable sort of the confidences.
- mce: max over non-empty equal-width bins of |acc_b - conf_b|.
- classwise_ece: mean over classes of the equal-width binary ECE of p[:, c] against 1[y = c].
- aurc: area under the risk-coverage curve of the max-probability score (torch-uncertainty's form).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor

from vcal_cli.metrics._validate import DEFAULT_N_BINS, check_bins, from_logits, from_probs, top_label
from vcal_cli.metrics.calibration import (
    ReliabilityBin,
    adaptive_ece_kernel,
    classwise_ece_kernel,
    ece_mce_kernel,
    reliability_bins,
)
from vcal_cli.metrics.scoring import aurc_kernel, per_sample

__all__ = [
    "Metrics",
    "MetricsResult",
    "METRIC_NAMES",
    "DEFAULT_N_BINS",
    "compute_metrics",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "ece_adaptive",
    "mce",
    "classwise_ece",
    "aurc",
    "ReliabilityBin",
]

DEFAULT_N_BOOTSTRAP = 200
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Metrics:
    """One value per metric; the field names are the report keys."""

    accuracy: float
    nll: float
    brier: float
    ece: float
    ece_adaptive: float
    mce: float
    classwise_ece: float
    aurc: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Metrics))
LOWER_IS_BETTER = {name: name != "accuracy" for name in METRIC_NAMES}


@dataclass(frozen=True)
class MetricsResult:
    metrics: Metrics
    intervals: dict[str, tuple[float, float]]  # percentile bootstrap 95% interval per metric
    reliability: list[ReliabilityBin]
    n: int
    n_bins: int
    n_bootstrap: int
    seed: int


def _all_metrics(
    probs: Tensor, log_probs: Tensor, labels: Tensor, idx: Tensor | None, n_bins: int
) -> dict[str, Tensor]:
    """Every metric for each resample row of `idx` (R, N) of sample indices; `idx=None` is the sample itself."""
    s = per_sample(probs, log_probs, labels)
    n = len(labels)
    if idx is None:
        w = torch.ones(1, n, dtype=torch.float64)
        conf, correct = s["conf"][None], s["correct"][None]
    else:
        w = torch.zeros(len(idx), n, dtype=torch.float64).scatter_add_(
            1, idx, torch.ones_like(idx, dtype=torch.float64)
        )
        conf, correct = s["conf"][idx], s["correct"][idx]
    e, m = ece_mce_kernel(s["conf"], s["correct"], w, n_bins)
    return {
        "accuracy": (w @ s["correct"]) / n,
        "nll": (w @ s["nll"]) / n,
        "brier": (w @ s["brier"]) / n,
        "ece": e,
        "ece_adaptive": adaptive_ece_kernel(conf, correct, n_bins),
        "mce": m,
        "classwise_ece": classwise_ece_kernel(probs, labels, w, n_bins),
        "aurc": aurc_kernel(conf, correct),
    }


def compute_metrics(
    labels: Tensor,
    *,
    logits: Tensor | None = None,
    probs: Tensor | None = None,
    n_bins: int = DEFAULT_N_BINS,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> MetricsResult:
    """All metrics, their percentile-bootstrap 95% intervals, and the reliability bins.

    Give exactly one of `logits` (preferred: exact NLL) or `probs`. The bootstrap draws `n_bootstrap`
    resamples of the N samples with replacement from a generator seeded with `seed`.
    """
    check_bins(n_bins)
    if (logits is None) == (probs is None):
        raise ValueError("give exactly one of logits or probs")
    p, lp, y = from_logits(logits, labels) if logits is not None else from_probs(probs, labels)  # type: ignore[arg-type]
    point = {k: float(v[0]) for k, v in _all_metrics(p, lp, y, None, n_bins).items()}
    intervals: dict[str, tuple[float, float]] = {}
    if n_bootstrap > 0:
        gen = torch.Generator().manual_seed(seed)
        n = len(y)
        step = max(1, 2_000_000 // n)
        chunks = [
            _all_metrics(p, lp, y, torch.randint(0, n, (min(step, n_bootstrap - s), n), generator=gen), n_bins)
            for s in range(0, n_bootstrap, step)
        ]
        for k in METRIC_NAMES:
            vals = torch.cat([c[k] for c in chunks])
            lo, hi = torch.quantile(vals, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            intervals[k] = (lo, hi)
    s = per_sample(p, lp, y)
    return MetricsResult(
        Metrics(**point),
        intervals,
        reliability_bins(s["conf"], s["correct"], n_bins),
        len(y),
        n_bins,
        n_bootstrap,
        seed,
    )


def _one(name: str, probs: Tensor, labels: Tensor, n_bins: int) -> float:
    p, lp, y = from_probs(probs, labels)
    return float(_all_metrics(p, lp, y, None, check_bins(n_bins))[name][0])


def accuracy(probs: Tensor, labels: Tensor) -> float:
    return float(top_label(probs, labels)[1].mean())


def nll(logits: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits)."""
    p, lp, y = from_logits(logits, labels)
    return float(_all_metrics(p, lp, y, None, DEFAULT_N_BINS)["nll"][0])


def brier(probs: Tensor, labels: Tensor) -> float:
    return _one("brier", probs, labels, DEFAULT_N_BINS)


def _ece_mce(probs: Tensor, labels: Tensor, n_bins: int) -> tuple[float, float]:
    """Top-label ECE and MCE from the confidences alone (single metrics skip the (N, C) float64 work)."""
    conf, correct = top_label(probs, labels)
    e, m = ece_mce_kernel(conf, correct, torch.ones(1, len(conf), dtype=torch.float64), check_bins(n_bins))
    return float(e[0]), float(m[0])


def ece(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    return _ece_mce(probs, labels, n_bins)[0]


def ece_adaptive(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    conf, correct = top_label(probs, labels)
    return float(adaptive_ece_kernel(conf[None], correct[None], check_bins(n_bins))[0])


def mce(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    return _ece_mce(probs, labels, n_bins)[1]


def classwise_ece(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    return _one("classwise_ece", probs, labels, n_bins)


def aurc(probs: Tensor, labels: Tensor) -> float:
    conf, correct = top_label(probs, labels)
    return float(aurc_kernel(conf[None], correct[None])[0])

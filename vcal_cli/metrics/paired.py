"""The paired bootstrap: the change of every metric between two predictors on the same samples.

Both predictors are resampled with the same draws, so the interval of (current - baseline) is much
narrower than two independent intervals: `vcal gate` judges noise with it, and `vcal retrain` gives
every head its verdict against the original and temperature scaling with it.

A calibration error's plug-in is biased upward by noise, by between 0 (far from calibrated) and its noise floor's
mean (a calibrated model of this size: `metrics.inference`), so the change of plug-ins carries the difference of two
unknown biases. Given both sides' noise-floor means (`floors`), the ECE-type changes get the bias-bounded interval
[d - m_cur - 1.96 sd, d + m_base + 1.96 sd] (sd the paired resamples' standard deviation), which holds every
change in that range; without them, and for every other metric, the change -/+ 1.96 standard deviations of the paired
resamples (the percentile interval of 200 resamples held NLL's and Brier's change in 0.91-0.945 of draws).
`benchmarks/bench_paired_intervals.py` measures both (docs/metrics.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vcal_cli.metrics import LOWER_IS_BETTER, METRIC_NAMES, compute_metrics, evaluate_scores, make_scores
from vcal_cli.metrics.inference import ALPHA, Z, normal_interval

Floors = tuple[dict[str, float], dict[str, float]]  # (baseline's, current's) noise-floor means by metric
# how the interval of each change is made (report.json settings.intervals.paired)
PAIRED_INTERVALS = (
    "paired bootstrap (both predictors on the same resamples); ECE-type changes given both sides' noise floors: "
    "[d - m_current - 1.96 sd, d + m_baseline + 1.96 sd], m the noise-floor mean; other changes: d -/+ 1.96 sd"
)


def _paired(
    base_logits: torch.Tensor,
    cur_logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    floors: Floors | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Per metric: (current - baseline on the sample, the interval's ends), both predictors resampled with the same
    rows; the interval as the module says."""
    a, y = make_scores(labels, base_logits, None)
    b, _ = make_scores(labels, cur_logits, None)
    (va, _), (vb, _) = evaluate_scores([a, b], y, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    out = {}
    for k in METRIC_NAMES:
        d = (vb[k] - va[k]).double()
        d0 = float(d[0])
        if floors is not None and k in floors[0] and k in floors[1] and len(d) > 2:
            z = Z[ALPHA] * float(d[1:].std())
            out[k] = (d0, d0 - floors[1][k] - z, d0 + floors[0][k] + z)
        else:
            lo, hi = normal_interval(d0, d[1:]) or (math.nan, math.nan)
            out[k] = (d0, lo, hi)
    return out


def noise_floors(debiased: dict[str, Any]) -> dict[str, float]:
    """The noise-floor means of a result's ECE-type metrics (`MetricsResult.debiased` or report.json's `debiased`)."""
    out = {}
    for k, e in (debiased or {}).items():
        m = e.get("null_mean") if isinstance(e, dict) else getattr(e, "null_mean", None)
        if m is not None and not math.isnan(m):
            out[k] = float(m)
    return out


def floors_of(
    logits: torch.Tensor, labels: torch.Tensor, *, n_bins: int, n_bootstrap: int, seed: int
) -> dict[str, float]:
    """The ECE-type noise-floor means of one predictor's logits (or log-probabilities), computed here."""
    m = compute_metrics(labels, logits=logits, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed, with_details=False)
    return noise_floors(m.debiased)


def verdicts(
    base_logits: torch.Tensor,
    cur_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    floors: Floors | None = None,
) -> dict[str, dict[str, object]]:
    """Per metric: the change against `base` on the same samples, its paired-bootstrap 95% interval and a
    verdict: better / no different / worse beyond noise (the interval excludes 0)."""
    paired = _paired(base_logits, cur_logits, labels, n_bins, n_bootstrap, seed, floors)
    return {
        k: {"delta": delta, "interval": [lo, hi], "verdict": verdict_of(lo, hi, LOWER_IS_BETTER[k])}
        for k, (delta, lo, hi) in paired.items()
    }


def verdict_of(lo: float, hi: float, lower_is_better: bool = True) -> str:
    """better / worse / no different: whether the 95% interval (lo, hi) of (current - baseline) excludes 0."""
    sign = 1 if lower_is_better else -1
    if sign * lo < 0 and sign * hi < 0:
        return "better"
    if sign * lo > 0 and sign * hi > 0:
        return "worse"
    return "no different"


def paired_deltas(
    base_logits: torch.Tensor,
    cur_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    floors: Floors | None = None,
) -> dict[str, tuple[float, float]]:
    """95% interval of (current - baseline) for every metric, resampling the same samples for both."""
    paired = _paired(base_logits, cur_logits, labels, n_bins, n_bootstrap, seed, floors)
    return {k: (lo, hi) for k, (_, lo, hi) in paired.items()}

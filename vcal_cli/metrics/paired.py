"""The paired bootstrap: the change of every metric between two predictors on the same samples.

Both predictors are resampled with the same draws, so the interval of (current - baseline) is much
narrower than two independent intervals: `vcal gate` judges noise with it, and `vcal retrain` gives
every head its verdict against the original and temperature scaling with it.
"""

from __future__ import annotations

import torch

from vcal_cli.metrics import LOWER_IS_BETTER, METRIC_NAMES, evaluate_scores, make_scores


def _paired(
    base_logits: torch.Tensor, cur_logits: torch.Tensor, labels: torch.Tensor, n_bins: int, n_bootstrap: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """Per metric: (current - baseline on the sample, the 2.5% and the 97.5% percentile of the resampled
    differences), both predictors resampled with the same rows."""
    a, y = make_scores(labels, base_logits, None)
    b, _ = make_scores(labels, cur_logits, None)
    (va, _), (vb, _) = evaluate_scores([a, b], y, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    out = {}
    for k in METRIC_NAMES:
        d = (vb[k] - va[k]).double()
        lo, hi = torch.quantile(d[1:], q).tolist()
        out[k] = (float(d[0]), lo, hi)
    return out


def verdicts(
    base_logits: torch.Tensor,
    cur_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
) -> dict[str, dict[str, object]]:
    """Per metric: the change against `base` on the same samples, its paired-bootstrap 95% interval and a
    verdict: better / no different / worse beyond noise (the interval excludes 0)."""
    return {
        k: {"delta": delta, "interval": [lo, hi], "verdict": verdict_of(lo, hi, LOWER_IS_BETTER[k])}
        for k, (delta, lo, hi) in _paired(base_logits, cur_logits, labels, n_bins, n_bootstrap, seed).items()
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
) -> dict[str, tuple[float, float]]:
    """95% percentile interval of (current - baseline) for every metric, resampling the same samples for both."""
    return {
        k: (lo, hi) for k, (_, lo, hi) in _paired(base_logits, cur_logits, labels, n_bins, n_bootstrap, seed).items()
    }

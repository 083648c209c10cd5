"""The paired bootstrap: the change of every metric between two predictors on the same samples.

Both predictors are resampled with the same draws, so the interval of (current - baseline) is much
narrower than two independent intervals: `vcal gate` judges noise with it, and `vcal retrain` gives
every head its verdict against the original and temperature scaling with it.
"""

from __future__ import annotations

import torch

from vcal_cli.metrics import METRIC_NAMES, evaluate_scores, make_scores


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
    a, y = make_scores(labels, base_logits, None)
    b, _ = make_scores(labels, cur_logits, None)
    (va, _), (vb, _) = evaluate_scores([a, b], y, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    return {k: tuple(torch.quantile(vb[k][1:] - va[k][1:], q).tolist()) for k in METRIC_NAMES}  # type: ignore[misc]

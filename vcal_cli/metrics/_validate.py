"""Check metric inputs once at the boundary; the kernels after this trust their inputs."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli._defaults import DEFAULT_N_BINS, MAX_BINS  # noqa: F401  (DEFAULT_N_BINS re-exported)
from vcal_cli.errors import MetricError

PROB_CLAMP = 1e-7  # NLL from probabilities only: log(max(p, 1e-7)), the Keras / robustness_metrics convention


def check_bins(n_bins: int) -> int:
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or not 1 <= n_bins <= MAX_BINS:
        raise MetricError(f"--bins {str(n_bins)[:20]} must be an integer from 1 to {MAX_BINS}")
    return n_bins


def check_labels(labels: Tensor, n: int, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise MetricError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        if not torch.equal(labels, labels.round()):
            raise MetricError("labels must be integer class indices")
    labels = labels.long()
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise MetricError(f"labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return labels


def check_probs(probs: Tensor) -> Tensor:
    """Probabilities (N, C) whose rows sum to 1, checked in their own dtype (no float64 copy of the matrix)."""
    probs = torch.as_tensor(probs)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise MetricError(f"probabilities must have shape (N, C) with N >= 1, got {tuple(probs.shape)}")
    # one pass, in at least float32: a NaN or inf anywhere makes its row sum non-finite
    rows = probs.sum(1, dtype=torch.float64 if probs.dtype == torch.float64 else torch.float32)
    if not torch.isfinite(rows).all():
        raise MetricError(f"probabilities hold NaN or inf in {(~torch.isfinite(rows)).sum().item()} rows")
    lo, hi = torch.aminmax(probs)
    if lo < 0 or hi > 1:
        raise MetricError("probabilities must lie in [0, 1]; pass logits instead if these are scores")
    worst = (rows.double() - 1).abs().max().item()
    if worst > 1e-3:
        raise MetricError(
            f"probability rows must sum to 1 (worst row is off by {worst:.2g}); pass logits instead if these are scores"
        )
    return probs


def top_label(probs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Validated top-label confidence and correctness (N,) float64: what ECE, MCE and AURC need. The max of
    float32 values is exact, so this equals the float64 path bit for bit."""
    probs = check_probs(probs)
    y = check_labels(labels, len(probs), probs.shape[1])
    conf, pred = probs.max(1)
    return conf.double(), (pred == y).double()

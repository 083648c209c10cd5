"""Out-of-distribution detection: scores and their threshold-free metrics.

Convention (torch-uncertainty, OpenOOD, pytorch-ood): OOD is the positive class and every score is
"higher = more OOD". AUROC is exact (average ranks for ties, as scikit-learn's trapezoid); AUPR is the
average precision over distinct thresholds (scikit-learn's `average_precision_score`); FPR95 is the
fraction of in-distribution samples flagged at the first threshold that recalls 95% of the OOD ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.errors import MetricError


def msp_score(logits: Tensor) -> Tensor:
    """Negative maximum softmax probability."""
    return -torch.softmax(logits.double(), 1).amax(1)


def entropy_score(logits: Tensor) -> Tensor:
    """Entropy of the predictive softmax(logits), in nats (logits may be log-probabilities)."""
    logp = torch.log_softmax(logits.double(), 1)
    return -(logp.exp() * logp).sum(1)


def max_logit_score(logits: Tensor) -> Tensor:
    return -logits.double().amax(1)


def energy_score(logits: Tensor) -> Tensor:
    """Negative free energy -logsumexp(logits) (Liu et al. 2020): low for confident in-distribution inputs."""
    return -torch.logsumexp(logits.double(), 1)


def mahalanobis_fit(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Class means (K, D) and the inverse of the shared (tied) covariance from train features (Lee et al. 2018)."""
    f = features.double()
    means = torch.stack([f[labels == c].mean(0) if (labels == c).any() else f.mean(0) for c in range(num_classes)])
    centred = f - means[labels]
    cov = centred.T @ centred / len(f)
    return means, torch.linalg.pinv(cov, hermitian=True)


def mahalanobis_score(features: Tensor, means: Tensor, precision: Tensor) -> Tensor:
    """Minimum over classes of the squared Mahalanobis distance to the class mean."""
    diff = features.double()[:, None, :] - means[None]  # (N, K, D)
    return torch.einsum("nkd,de,nke->nk", diff, precision, diff).amin(1)


def _labels_scores(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor]:
    if len(id_scores) == 0 or len(ood_scores) == 0:
        raise MetricError("OOD metrics need in- and out-of-distribution samples")
    s = torch.cat([id_scores.double(), ood_scores.double()])
    if not torch.isfinite(s).all():
        raise MetricError("OOD scores hold NaN or inf")
    y = torch.cat([torch.zeros(len(id_scores)), torch.ones(len(ood_scores))]).double()
    return s, y


def _curve(s: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true and false positives at each distinct threshold, highest score first."""
    order = torch.sort(s, descending=True, stable=True).indices
    s, y = s[order], y[order]
    last = torch.ones(len(s), dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last position of each run of tied scores
    return y.cumsum(0)[last], (1 - y).cumsum(0)[last]


def auroc(id_scores: Tensor, ood_scores: Tensor) -> float:
    s, y = _labels_scores(id_scores, ood_scores)
    tp, fp = _curve(s, y)
    tpr = torch.cat([torch.zeros(1, dtype=tp.dtype), tp / tp[-1]])
    fpr = torch.cat([torch.zeros(1, dtype=fp.dtype), fp / fp[-1]])
    return float(torch.trapezoid(tpr, fpr))


def aupr(id_scores: Tensor, ood_scores: Tensor) -> float:
    s, y = _labels_scores(id_scores, ood_scores)
    tp, fp = _curve(s, y)
    precision, recall = tp / (tp + fp), tp / tp[-1]
    return float(((recall - torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])) * precision).sum())


def fpr_at_95_tpr(id_scores: Tensor, ood_scores: Tensor) -> float:
    s, y = _labels_scores(id_scores, ood_scores)
    tp, fp = _curve(s, y)
    i = int(torch.nonzero(tp / tp[-1] >= 0.95)[0])
    return float(fp[i] / fp[-1])

"""Class-conditional Gaussians on the features: Mahalanobis (Lee et al. 2018) and relative Mahalanobis (Ren et al.
2021), fitted from one blocked pass over the train features (float32 block products summed in float64), scored in
row blocks as q(x) - 2 x.P mu_k + mu_k.P mu_k: never an (N, K, D) tensor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vcal_cli.detectors.base import Detector, Scored, Train, block_rows, register


@dataclass(frozen=True, kw_only=True)
class Moments:
    """Class means (K, D), the global mean (D,), and the tied within-class and total covariances (D, D), each
    divided by N (the maximum-likelihood estimates the papers use)."""

    means: Tensor
    mean: Tensor
    within: Tensor
    total: Tensor

    @classmethod
    def of(cls, train: Train) -> Moments:
        f, y, k = train.features, train.labels, train.num_classes
        n, d = f.shape
        pivot = f[: min(n, 65536)].double().mean(0)  # centring first keeps the float32 block products exact enough
        scatter = torch.zeros(d, d, dtype=torch.float64)
        sums = torch.zeros(k, d, dtype=torch.float64)
        step = block_rows(d)
        for a in range(0, n, step):
            x = f[a : a + step].double() - pivot
            x32 = x.float()
            scatter += (x32.T @ x32).double()
            sums.index_add_(0, y[a : a + step], x)
        counts = torch.bincount(y, minlength=k).double()
        centred = sums / counts.clamp_min(1)[:, None]  # class means minus the pivot
        overall = sums.sum(0) / n
        centred[counts == 0] = overall  # a class absent from train: the global mean
        within = (scatter - (centred.T * counts) @ centred) / n
        total = scatter / n - torch.outer(overall, overall)
        return cls(means=centred + pivot, mean=overall + pivot, within=within, total=total)


def moments(train: Train) -> Moments:
    """The train split's moments, computed once for every detector that needs them."""
    return train.shared("gaussian", lambda: Moments.of(train))


def _precision(cov: Tensor) -> Tensor:
    return torch.linalg.pinv(cov, hermitian=True)


def min_class_distance(features: Tensor, means: Tensor, precision: Tensor) -> Tensor:
    """min over classes of the squared Mahalanobis distance (x - mu_k).P(x - mu_k), (N,), in row blocks."""
    pivot = means.mean(0)
    c = means - pivot
    cross_w = precision @ c.T  # (D, K)
    cc = ((c @ precision) * c).sum(1)
    out = torch.empty(len(features), dtype=torch.float64)
    step = block_rows(max(means.shape))
    for a in range(0, len(features), step):
        x = features[a : a + step].double() - pivot
        q = ((x @ precision) * x).sum(1)
        out[a : a + len(x)] = (q[:, None] - 2 * (x @ cross_w) + cc).amin(1)
    return out


def distance(features: Tensor, mean: Tensor, precision: Tensor) -> Tensor:
    """(x - mean).P(x - mean) for every row: the class distance with one class."""
    return min_class_distance(features, mean[None], precision)


@register
class Mahalanobis(Detector):
    name, uses = "mahalanobis", "features"
    paper = "minimum Mahalanobis distance to a class mean, tied covariance (Lee et al. 2018)"

    def fit(self, train: Train) -> None:
        m = moments(train)
        self.means, self.precision = m.means, _precision(m.within)

    def score(self, x: Scored) -> Tensor:
        return min_class_distance(x.features, self.means, self.precision)


@register
class RelativeMahalanobis(Mahalanobis):
    name, uses = "relative_mahalanobis", "features"
    paper = "relative Mahalanobis: class distance minus the distance under one Gaussian of all train (Ren et al. 2021)"

    def fit(self, train: Train) -> None:
        super().fit(train)
        m = moments(train)
        self.mean, self.background = m.mean, _precision(m.total)

    def score(self, x: Scored) -> Tensor:
        return super().score(x) - distance(x.features, self.mean, self.background)

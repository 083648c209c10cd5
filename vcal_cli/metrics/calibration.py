"""Binned calibration errors: ECE, adaptive ECE, MCE, classwise ECE, and the reliability-diagram bins.

Binning rule (equal width): B bins with edges linspace(0, 1, B + 1); bin b is [lo, hi) and the last
bin is closed at 1.0, so a confidence of exactly 1.0 counts in the last bin (netcal, numpy.histogram;
torchmetrics instead opens an extra bin for 1.0). All sums are in float64.

Every kernel takes resampling weights `w` (R, N): row r counts how often each sample appears in
resample r (all ones for the point estimate). That is how the bootstrap reuses the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def bin_index(values: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each value in [0, 1]: [lo, hi) with the last bin closed at 1.0."""
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    return (torch.searchsorted(edges, values.double(), right=True) - 1).clamp_(0, n_bins - 1)


def _bin_sums(idx: Tensor, w: Tensor, values: tuple[Tensor, ...], n_bins: int) -> tuple[Tensor, ...]:
    """Per-bin weighted count and weighted sums of each of `values`; each result (R, n_bins)."""
    r = w.shape[0]
    ix = idx.expand(r, -1)
    out = [torch.zeros(r, n_bins, dtype=torch.float64).scatter_add_(1, ix, w)]
    out += [torch.zeros(r, n_bins, dtype=torch.float64).scatter_add_(1, ix, w * v) for v in values]
    return tuple(out)


def ece_mce_kernel(conf: Tensor, correct: Tensor, w: Tensor, n_bins: int) -> tuple[Tensor, Tensor]:
    """Top-label ECE and MCE for each resample row of `w`; each (R,)."""
    cnt, s_conf, s_acc = _bin_sums(bin_index(conf, n_bins), w, (conf, correct), n_bins)
    gap = (s_acc - s_conf).abs()
    ece = gap.sum(1) / w.sum(1)
    mce = torch.where(cnt > 0, gap / cnt.clamp_min(1e-300), torch.zeros_like(gap)).amax(1)
    return ece, mce


def adaptive_ece_kernel(conf: Tensor, correct: Tensor, n_bins: int) -> Tensor:
    """Equal-count ECE: sort by confidence (stable), split into n_bins chunks like `torch.tensor_split`.

    `conf` and `correct` are (R, N): one row per (re)sample, already gathered.
    """
    n = conf.shape[1]
    order = torch.sort(conf, dim=1, stable=True).indices
    c, a = conf.gather(1, order), correct.gather(1, order)
    sizes = [n // n_bins + (1 if i < n % n_bins else 0) for i in range(n_bins)]
    sizes = [s for s in sizes if s > 0]
    gaps = [(ca - cc).sum(1).abs() for cc, ca in zip(c.split(sizes, 1), a.split(sizes, 1), strict=True)]
    return torch.stack(gaps, 1).sum(1) / n


def classwise_ece_kernel(probs: Tensor, labels: Tensor, w: Tensor, n_bins: int) -> Tensor:
    """Mean over classes of the binary ECE of p[:, c] against 1[y = c] (Kull et al. 2019); (R,)."""
    n, k = probs.shape
    idx = bin_index(probs, n_bins) + torch.arange(k) * n_bins  # (N, K) flat (class, bin) slot
    onehot = torch.nn.functional.one_hot(labels, k).double()
    r = w.shape[0]
    out = torch.empty(r, dtype=torch.float64)
    step = max(1, 20_000_000 // max(1, n * k))  # bound the (rows, N*K) scatter to ~160 MB
    flat = idx.reshape(1, -1)
    for s in range(0, r, step):
        ww = w[s : s + step].repeat_interleave(k, dim=1)  # (r', N*K): sample weight for every class
        _, sp, sy = _bin_sums(flat, ww, (probs.reshape(1, -1), onehot.reshape(1, -1)), k * n_bins)
        out[s : s + step] = (sy - sp).abs().sum(1) / (w[s : s + step].sum(1) * k)
    return out


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    count: int
    confidence: float | None  # mean top-label confidence in the bin; None when empty
    accuracy: float | None


def reliability_bins(conf: Tensor, correct: Tensor, n_bins: int) -> list[ReliabilityBin]:
    """The data of a reliability diagram, from the same binning as `ece`."""
    w = torch.ones(1, len(conf), dtype=torch.float64)
    cnt, s_conf, s_acc = (t[0] for t in _bin_sums(bin_index(conf, n_bins), w, (conf, correct), n_bins))
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64).tolist()
    return [
        ReliabilityBin(
            edges[b],
            edges[b + 1],
            int(cnt[b]),
            float(s_conf[b] / cnt[b]) if cnt[b] else None,
            float(s_acc[b] / cnt[b]) if cnt[b] else None,
        )
        for b in range(n_bins)
    ]

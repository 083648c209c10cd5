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


def ece_mce_kernel(
    conf: Tensor, correct: Tensor, w: Tensor, n_bins: int, bins: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Top-label ECE and MCE for each resample row of `w`; each (R,). `bins`: `bin_index(conf)`, if known."""
    bins = bin_index(conf, n_bins) if bins is None else bins
    cnt, s_conf, s_acc = _bin_sums(bins, w, (conf, correct), n_bins)
    gap = (s_acc - s_conf).abs()
    ece = gap.sum(1) / w.sum(1)
    mce = torch.where(cnt > 0, gap / cnt.clamp_min(1e-300), torch.zeros_like(gap)).amax(1)
    return ece, mce


def adaptive_ece_prepare(conf: Tensor, correct: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What adaptive ECE needs of the samples alone: the ascending stable order, conf and correct in that
    order, and the chunk ends (places) of `torch.tensor_split` into n_bins. Loops over resamples reuse it."""
    n = conf.shape[0]
    order = torch.sort(conf, stable=True).indices
    sizes = torch.tensor([n // n_bins + (1 if i < n % n_bins else 0) for i in range(n_bins)], dtype=torch.float64)
    cuts = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(sizes, 0)])
    return order, conf[order], correct[order], cuts


def adaptive_ece_kernel(
    conf: Tensor, correct: Tensor, w: Tensor, n_bins: int, prepared: tuple[Tensor, ...] | None = None
) -> Tensor:
    """Equal-count ECE for each resample row of `w` (R, N); (R,).

    The resample, sorted by confidence (stable), is cut into n_bins chunks like `torch.tensor_split`.
    A sample drawn w times fills w consecutive places of that sorted sequence, so each chunk's sums are
    differences of the weighted prefix sums at its ends, and a sample that straddles an end is split
    across the two chunks: exactly what sorting the materialised resample gives (ties between distinct
    samples aside, which keep their index order here).
    """
    n = conf.shape[0]
    order, cs, ca, cuts = prepared or adaptive_ece_prepare(conf, correct, n_bins)
    ww = w[:, order]
    ends = ww.cumsum(1)  # sorted place after each sample's run
    sc, sa = (ww * cs).cumsum_(1), ww.mul_(ca).cumsum_(1)  # ww is this call's own copy
    cut = cuts.expand(len(w), -1).contiguous()
    j = torch.searchsorted(ends, cut).clamp_(max=n - 1)  # the sample whose run holds place `cut`
    past = ends.gather(1, j).sub_(cut)  # places of that run beyond the cut

    def prefix(s: Tensor, v: Tensor) -> Tensor:  # sum of the first `cut` places
        return s.gather(1, j) - past * v[j]

    fc, fa = prefix(sc, cs), prefix(sa, ca)
    return ((fa[:, 1:] - fa[:, :-1]) - (fc[:, 1:] - fc[:, :-1])).abs().sum(1) / n


@dataclass(frozen=True, kw_only=True)
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
            lo=edges[b],
            hi=edges[b + 1],
            count=int(cnt[b]),
            confidence=float(s_conf[b] / cnt[b]) if cnt[b] else None,
            accuracy=float(s_acc[b] / cnt[b]) if cnt[b] else None,
        )
        for b in range(n_bins)
    ]

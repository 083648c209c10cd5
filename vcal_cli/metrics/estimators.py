"""Top-label calibration-error estimators beyond ECE-15, each as a kernel over resampling weights.

Every kernel reads a `Sorted` view of the samples (confidences in ascending stable order) and returns one
value per row of its weights `w` (R, N) and outcomes `y` ((N,) shared, or (R, N): the consistency
resamples of `vcal_cli.metrics.inference` redraw the outcomes and keep the weights at one). That is how the
bootstrap and the noise floor reuse one code path.

- `ece`: equal-width binned ECE (the report's `ece`, see `vcal_cli.metrics.calibration`).
- `ece_adaptive`: B equal-mass bins.
- `ece_sweep` (Roelofs et al. 2022, "Mitigating bias in calibration error estimation"): equal-mass bins,
  the largest count b whose bin accuracies are non-decreasing (b from 1 upwards, stopping at the first
  non-monotone b); L1, weighted by bin mass.
- `ece_l2_debiased` (Kumar, Liang & Ma 2019, "Verified uncertainty calibration"; `p-lambda/verified_calibration`,
  the `uncertainty-calibration` package): B equal-mass bins; sqrt(max(0, sum_b (n_b / n) [(conf_b - acc_b)^2 -
  acc_b (1 - acc_b) / (n_b - 1)])), bins of fewer than 2 samples count 0.
- `ece_corp` (Dimitriadis, Gneiting & Jordan 2021, "Stable reliability diagrams..."): the mean of
  |conf - PAV(conf)|, where PAV is the isotonic (pool-adjacent-violators) regression of the outcomes on the
  confidences: the L1 miscalibration of the CORP reliability diagram, with no bins to choose.
- `ece_smooth` (Blasiok & Nakkiran 2024): `vcal_cli.metrics.smooth`, at the sample's bandwidth sigma*
  for every resample (the fixed point is searched once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import isotonic_regression
from torch import Tensor

from vcal_cli.metrics.calibration import bin_index
from vcal_cli.metrics.smooth import bandwidth, smooth_batch

SWEEP_MAX_BINS = 1000  # the sweep stops here at the latest (it stops far earlier on any real model)


@dataclass(frozen=True, kw_only=True)
class Sorted:
    """Confidences in ascending stable order, the outcomes in that order, and what the kernels reuse."""

    conf: Tensor  # (N,) float64, ascending
    correct: Tensor  # (N,) float64 in the same order
    order: Tensor  # the permutation from the original order
    sigma: float  # smooth ECE's bandwidth on the sample

    @classmethod
    def of(cls, conf: Tensor, correct: Tensor, sigma: float | None = None) -> Sorted:
        """`sigma`: smooth ECE's bandwidth when already known (the details' kernel curve found it)."""
        order = torch.sort(conf, stable=True).indices
        c, y = conf.double()[order], correct.double()[order]
        return cls(conf=c, correct=y, order=order, sigma=bandwidth(c, y) if sigma is None else sigma)

    def weights(self, counts: Tensor) -> Tensor:
        """Resample counts (R, N) in original order -> float64 weights in sorted order."""
        return counts[:, self.order].double()


def _rows(y: Tensor, w: Tensor) -> Tensor:
    return y.expand_as(w) if y.ndim == 1 else y


def ece_binned(rows: Rows, n_bins: int = 15) -> Tensor:
    """Equal-width top-label ECE for each row (the same as `calibration.ece_mce_kernel`)."""
    s, y, w = rows.s, rows.y, rows.w
    b = bin_index(s.conf, n_bins).expand_as(w)
    d = torch.zeros(len(w), n_bins, dtype=torch.float64).scatter_add_(1, b, w * (_rows(y, w) - s.conf))
    return d.abs().sum(1) / w.sum(1)


@dataclass(frozen=True, kw_only=True)
class _Prefix:
    """Weighted prefix sums of count, confidence and outcome along each row's sorted resample."""

    ends: Tensor
    sc: Tensor
    sa: Tensor
    y: Tensor
    conf: Tensor
    total: int

    @classmethod
    def of(cls, s: Sorted, y: Tensor, w: Tensor, shared_weights: bool = False) -> _Prefix:
        yy = _rows(y, w)
        if shared_weights:  # every weight one: the count and confidence sums are the same for every row
            n = w.shape[1]
            ends = torch.arange(1, n + 1, dtype=torch.float64).expand_as(w)
            return cls(ends=ends, sc=s.conf.cumsum(0).expand_as(w), sa=yy.cumsum(1), y=yy, conf=s.conf, total=n)
        ends = w.cumsum(1)
        return cls(
            ends=ends,
            sc=(w * s.conf).cumsum(1),
            sa=(w * yy).cumsum(1),
            y=yy,
            conf=s.conf,
            total=int(round(float(ends[0, -1]))),
        )

    def at(self, cuts: Tensor) -> tuple[Tensor, Tensor]:
        """Conf and outcome sums of the first `cuts` (R, M) places (a sample drawn w times fills w consecutive
        places; one that straddles a cut is split)."""
        # shared weights: ends[j] = j + 1, so the first j with ends[j] >= cut is ceil(cut) - 1
        if self.ends.stride(0) == 0:
            j = (cuts.ceil().long() - 1).clamp_(0, self.ends.shape[1] - 1)
        else:
            j = torch.searchsorted(self.ends, cuts).clamp_(max=self.ends.shape[1] - 1)
        past = self.ends.gather(1, j) - cuts
        return self.sc.gather(1, j) - past * self.conf[j], self.sa.gather(1, j) - past * self.y.gather(1, j)

    def bins(self, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per equal-mass bin (R, B): count, conf sum and outcome sum (chunks as `torch.tensor_split`)."""
        n = self.total
        sizes = torch.tensor([n // n_bins + (1 if i < n % n_bins else 0) for i in range(n_bins)], dtype=torch.float64)
        cuts = torch.cat([torch.zeros(1, dtype=torch.float64), sizes.cumsum(0)])
        fc, fa = self.at(cuts.expand(len(self.ends), -1).contiguous())
        return sizes.expand(len(self.ends), -1), fc.diff(dim=1), fa.diff(dim=1)


@dataclass(kw_only=True)
class Rows:
    """A block of resample rows: the sorted sample, outcomes ((N,) shared or (R, N)) and weights (R, N), with
    the equal-mass prefix sums computed once for every kernel that needs them."""

    s: Sorted
    y: Tensor
    w: Tensor
    shared_weights: bool = False  # every weight is one (consistency rows)
    _prefix: _Prefix | None = None

    @property
    def prefix(self) -> _Prefix:
        if self._prefix is None:
            self._prefix = _Prefix.of(self.s, self.y, self.w, self.shared_weights)
        return self._prefix


Kernel = Callable[[Rows], Tensor]  # one value per row


def ece_adaptive(rows: Rows, n_bins: int = 15) -> Tensor:
    _, c, a = rows.prefix.bins(min(n_bins, len(rows.s.conf)))
    return (a - c).abs().sum(1) / rows.prefix.total


def ece_l2_debiased(rows: Rows, n_bins: int = 15) -> Tensor:
    cnt, c, a = rows.prefix.bins(min(n_bins, len(rows.s.conf)))
    safe = cnt.clamp_min(2.0)
    acc = a / safe
    term = (c / safe - acc) ** 2 - acc * (1 - acc) / (safe - 1)
    sq = torch.where(cnt >= 2, cnt * term, torch.zeros_like(term)).sum(1) / rows.prefix.total
    return sq.clamp_min(0).sqrt()


def ece_sweep(rows: Rows) -> Tensor:
    """ECE over the most equal-mass bins that keep bin accuracies monotone, per row."""
    r, n = rows.w.shape
    pre = rows.prefix
    total = pre.total
    _, c, a = pre.bins(1)
    best = (a - c).abs().sum(1) / total  # one bin is always monotone
    alive = torch.ones(r, dtype=torch.bool)
    for b in range(2, min(n, SWEEP_MAX_BINS) + 1):
        cnt, c, a = pre.bins(b)
        acc = a / cnt.clamp_min(1e-300)
        ok = (acc.diff(dim=1) >= 0).all(1) & alive
        if not bool(ok.any()):
            break
        best = torch.where(ok, (a - c).abs().sum(1) / total, best)
        alive = ok
    return best


def ece_corp(rows: Rows) -> Tensor:
    """Mean |conf - PAV(conf)| per row, the PAV fit weighted by the row's counts (samples of weight 0 drop)."""
    yy = _rows(rows.y, rows.w).numpy()
    ww = rows.w.numpy()
    c = rows.s.conf.numpy()
    out = np.empty(len(ww))
    for i in range(len(ww)):
        if rows.shared_weights:  # consistency rows: every weight is one
            out[i] = float(np.abs(c - isotonic_regression(yy[i]).x).mean())
            continue
        keep = ww[i] > 0
        fit = isotonic_regression(yy[i][keep], weights=ww[i][keep]).x
        out[i] = float(np.dot(ww[i][keep], np.abs(c[keep] - fit)) / ww[i][keep].sum())
    return torch.from_numpy(out)


def ece_smooth(rows: Rows) -> Tensor:
    return smooth_batch(rows.s.conf, _rows(rows.y, rows.w), rows.w, rows.s.sigma, rows.shared_weights)


def estimators(n_bins: int) -> dict[str, Kernel]:
    """Every estimator by its report key, the binned ones at `n_bins` bins (the sweep chooses its own)."""
    return {
        "ece": lambda rows: ece_binned(rows, n_bins),
        "ece_adaptive": lambda rows: ece_adaptive(rows, n_bins),
        "ece_sweep": ece_sweep,
        "ece_l2_debiased": lambda rows: ece_l2_debiased(rows, n_bins),
        "ece_corp": ece_corp,
        "ece_smooth": ece_smooth,
    }

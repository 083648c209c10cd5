"""Calibration tests: does the evidence say this model is miscalibrated, beyond the noise of its test set?

Every test is of the top-label null "P(correct | confidence = c) = c" on the confidences c and the
correctness y of N samples; each returns a `Test` (statistic, p-value).

- `spiegelhalter` (Spiegelhalter 1986): Z = sum (y - c)(1 - 2c) / sqrt(sum (1 - 2c)^2 c (1 - c)), standard
  normal under the null; vcal reports the two-sided p-value 2 (1 - Phi(|Z|)). MAPIE's
  `spiegelhalter_p_value` is one-sided (1 - Phi(Z)), so a model can only fail it one way; the statistic is
  the same (tested against MAPIE 1.6).
- `ks` and `kuiper` (Arrieta-Ibarra, Gujral, Tannen, Tygert & Xu 2022; Tygert 2022): the cumulative sum of
  (y - c) / N in ascending order of c, divided by sigma = sqrt(sum c (1 - c)) / N, behaves as a standard
  Brownian motion on [0, 1] under the null: KS is its largest absolute value, Kuiper its range, with the
  p-values of those two functionals (the series MAPIE sums; tested against MAPIE 1.6, whose scores are
  jittered by 1e-8 to break ties where vcal sorts stably).
- `tcal` (Lee, Huang, Hassani & Dobriban 2023, "T-Cal: an optimal test for the calibration of predictive
  models"): the debiased plug-in estimate of the squared L2 ECE, sum over bins floor(m c) of
  [(sum d)^2 - sum d^2] / (n_b - 1) / N with d = c - y, maximised over the dyadic bin counts
  m = 2, 4, ..., 2^(floor(log2 N) - 3) (their adaptive test); the p-value by Monte Carlo under the null
  (outcomes redrawn from the confidences, the same maximum over m taken on each draw).
- `ece`: the noise-floor test of `vcal_cli.metrics.inference` (the binned ECE against its consistency
  resamples).

The verdict uses all five at family-wise level 5% by Holm's step-down rule (`reject`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vcal_cli.errors import MetricError

MIN_ROWS = 20  # below this no test is meaningful: an error for the API, a note in a report
_EPS = 2.220446049250313e-16


@dataclass(frozen=True)
class Test:
    statistic: float
    p_value: float
    reference: str  # the paper (and library) it follows

    def to_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "p_value": self.p_value, "reference": self.reference}


def check_rows(n: int) -> None:
    if n < MIN_ROWS:
        raise MetricError(f"calibration tests need at least {MIN_ROWS} test rows, got {n}")


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def spiegelhalter(conf: Tensor, correct: Tensor) -> Test:
    c, y = conf.double(), correct.double()
    den = float(((1 - 2 * c) ** 2 * c * (1 - c)).sum().sqrt())
    z = float(((y - c) * (1 - 2 * c)).sum()) / den if den > 0 else 0.0
    return Test(z, min(1.0, 2 * (1 - _phi(abs(z)))), "Spiegelhalter 1986 (MAPIE 1.6 statistic; two-sided)")


def cumulative(conf: Tensor, correct: Tensor) -> tuple[Tensor, float]:
    """Cumulative differences sum (y - c) / N in ascending stable order of c, and their scale sigma."""
    c, y = conf.double(), correct.double()
    order = torch.sort(c, stable=True).indices
    n = len(c)
    return (y[order] - c[order]).cumsum(0) / n, float((c * (1 - c)).sum().sqrt()) / n


def ks_cdf(x: float) -> float:
    """P(max |B(t)| <= x) for a standard Brownian motion on [0, 1] (Darling & Siegert 1953)."""
    if x <= 0:
        return 0.0
    kmax = math.ceil(0.5 + x * math.sqrt(2) / math.pi * math.sqrt(math.log(4 / (math.pi * _EPS))))
    total = sum((-1) ** k / (k + 0.5) * math.exp(-((k + 0.5) ** 2) * math.pi**2 / (2 * x**2)) for k in range(kmax))
    return min(1.0, max(0.0, 2 / math.pi * total))


def kuiper_cdf(x: float) -> float:
    """P(max B - min B <= x) for a standard Brownian motion on [0, 1] (Kuiper 1960; Tygert 2022)."""
    if x <= 0:
        return 0.0
    inner = math.log(4 / (math.sqrt(2 * math.pi) * _EPS) * (1 / x + x / math.pi**2))
    kmax = math.ceil(0.5 + x / (math.pi * math.sqrt(2)) * math.sqrt(inner))
    total = sum(
        (8 / x**2 + 2 / ((k + 0.5) ** 2 * math.pi**2)) * math.exp(-2 * (k + 0.5) ** 2 * math.pi**2 / x**2)
        for k in range(kmax)
    )
    return min(1.0, max(0.0, total))


def ks(conf: Tensor, correct: Tensor) -> Test:
    cum, sigma = cumulative(conf, correct)
    stat = float(cum.abs().max()) / sigma if sigma > 0 else 0.0
    return Test(stat, 1 - ks_cdf(stat), "Arrieta-Ibarra et al. 2022, ECCE-MAD (MAPIE 1.6)")


def kuiper(conf: Tensor, correct: Tensor) -> Test:
    cum, sigma = cumulative(conf, correct)
    stat = float(cum.max() - cum.min()) / sigma if sigma > 0 else 0.0
    return Test(stat, 1 - kuiper_cdf(stat), "Arrieta-Ibarra et al. 2022, ECCE-R (MAPIE 1.6)")


def tcal_bins(n: int) -> list[int]:
    return [2**b for b in range(1, max(2, math.floor(math.log2(max(n, 2))) - 2))]


def tcal_statistic(conf: Tensor, y: Tensor) -> Tensor:
    """T-Cal's adaptive debiased plug-in statistic for each row of outcomes y ((N,) or (R, N)); (R,).

    The dyadic binnings nest, so one scatter at the finest count M serves every m: bin j of M lies in bin
    j // (M / m) of m (and a confidence of exactly 1, bin M of its own, in bin m)."""
    c = conf.double()
    yy = y.double().reshape(-1, len(c))
    d = c - yy
    ms = tcal_bins(len(c))
    top = ms[-1]
    idx = torch.floor(top * c).long().clamp_(0, top)
    ix = idx.expand_as(d)
    s1 = torch.zeros(len(d), top + 1, dtype=torch.float64).scatter_add_(1, ix, d)
    s2 = torch.zeros(len(d), top + 1, dtype=torch.float64).scatter_add_(1, ix, d * d)
    cnt = torch.bincount(idx, minlength=top + 1).double()
    best = torch.full((len(yy),), -math.inf, dtype=torch.float64)
    for m in ms:
        a, b, k = _coarse(s1, m, top), _coarse(s2, m, top), _coarse(cnt, m, top).clamp_min(2)
        best = torch.maximum(best, ((a * a - b) / (k - 1)).sum(1) / len(c))
    return best


def _coarse(t: Tensor, m: int, top: int) -> Tensor:
    """Sums over the `top` finest dyadic bins (last dim, plus the bin of exactly 1) merged into m bins."""
    return torch.cat([t[..., :top].reshape(*t.shape[:-1], m, top // m).sum(-1), t[..., top:]], dim=-1)


def tcal(conf: Tensor, correct: Tensor, null_y: Tensor) -> Test:
    """null_y: (R, N) outcomes drawn from the confidences (in the same order as `conf`)."""
    stat = float(tcal_statistic(conf, correct)[0])
    null = torch.cat([tcal_statistic(conf, null_y[a : a + 50]) for a in range(0, len(null_y), 50)])
    p = (1 + int((null >= stat - 1e-15).sum())) / (1 + len(null))
    return Test(stat, p, "Lee et al. 2023, adaptive T-Cal (Monte Carlo p-value)")


def holm(p_values: dict[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down rule: which hypotheses are rejected at family-wise level alpha."""
    order = sorted((p, name) for name, p in p_values.items() if not math.isnan(p))
    m, out = len(order), {name: False for name in p_values}
    for i, (p, name) in enumerate(order):
        if p > alpha / (m - i):
            break
        out[name] = True
    return out

"""Histogram binning of the original probabilities, fitted on val: one-vs-rest or top-label.

One-vs-rest (`--map-mode ovr`, the default; netcal's `HistogramBinning` for multi-class inputs): for each class k,
`--hist-bins` equal-width bins of p_k on [0, 1]; a bin's value is the frequency of y = k among the val samples in
it (samples assigned as scipy's `binned_statistic_dd` does, bins closed on the left), an empty bin takes
its centre; a new sample takes the value of its bin (closed on the right, as netcal's `np.digitize(...,
right=True)`), and the K values are normalised. Top-label (`--map-mode top`): one histogram of the top
class's confidence against correctness; the other classes share the rest in proportion.

Caveats as for `isotonic`: piecewise-constant maps tie confidences and can reorder samples; probabilities
are floored at 1e-6 and renormalised so NLL stays finite.

Zadrozny & Elkan. Obtaining calibrated probability estimates from decision trees and naive Bayesian
classifiers. ICML 2001.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vcal_cli.errors import UsageError
from vcal_cli.heads.base import param, register
from vcal_cli.heads.isotonic import MapHead, MapParams


@dataclass(frozen=True)
class HistogramParams(MapParams):
    hist_bins: int = param(10, "Equal-width bins per map (netcal's default).")


def histogram_table(x: torch.Tensor, y: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(edges (B+1,), values (B+1,), the last unused) of one equal-width histogram map."""
    eps = torch.finfo(torch.float64).eps
    x = x.double().clamp(eps, 1 - eps)
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    idx = (torch.searchsorted(edges, x, right=True) - 1).clamp(0, bins - 1)
    count = torch.bincount(idx, minlength=bins).double()
    hits = torch.bincount(idx, weights=y.double(), minlength=bins)
    centre = 0.5 * (edges[:-1] + edges[1:])
    values = torch.where(count > 0, hits / count.clamp_min(1), centre)
    return edges, torch.cat([values, values[-1:]])


@register
class HistogramHead(MapHead[HistogramParams]):
    name = "histogram"
    summary = "histogram binning of the probabilities (one-vs-rest or top-label), fitted on val (post-hoc)"
    paper = "Zadrozny & Elkan, ICML 2001"
    Params = HistogramParams
    interp = "bins"

    def _table(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bins = self.params.hist_bins
        if bins < 1:
            raise UsageError(f"--hist-bins {bins} must be at least 1")
        return histogram_table(x, y, bins)

    def extra_report(self) -> dict[str, Any]:
        return {"mode": self.params.map_mode, "bins": self.params.hist_bins}

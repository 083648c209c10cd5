"""The evidence behind an audit's verdict: every estimator with its interval and noise floor, the calibration
tests, the consistency bands of the reliability diagrams, and where the model is off.

One `Sorted` view of the top-label confidences, one set of bootstrap counts (shared with the metrics) and one
set of consistency outcomes (outcomes redrawn from the confidences) serve everything here; each costs
O(R x N), independent of the class count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import isotonic_regression
from torch import Tensor

from vcal_cli.metrics import calibration_tests as ct
from vcal_cli.metrics import estimators as est
from vcal_cli.metrics.calibration import bin_index
from vcal_cli.metrics.inference import ALPHA, Estimate, estimate_all

# the estimator a report leads with, and why (docs/metrics.md has the study behind it)
LEAD = "ece"
LEAD_WHY = (
    "ECE-15 is the number every peer and paper reports, and in the coverage study its interval held the truth in "
    "every case; the sweep and CORP estimators missed a non-monotone miscalibration, which they cannot see"
)
ESTIMATOR_LABELS = {
    "ece": "ECE (equal width)",
    "ece_adaptive": "adaptive ECE (equal mass)",
    "ece_sweep": "ECE sweep (Roelofs 2022)",
    "ece_l2_debiased": "debiased L2 ECE (Kumar 2019)",
    "ece_corp": "CORP ECE (isotonic)",
    "ece_smooth": "smooth ECE (Blasiok 2024)",
}
TEST_NAMES = ("ece", "tcal", "kuiper", "ks", "spiegelhalter")
CURVE_POINTS = 101
CORP_BAND_DRAWS = 100


@dataclass(frozen=True, kw_only=True)
class Evidence:
    estimators: dict[str, Estimate]
    tests: dict[str, ct.Test]
    rejected: dict[str, bool]  # Holm at family-wise 5% over TEST_NAMES
    bands: list[tuple[float, float] | None]  # per equal-width bin: where a calibrated model's accuracy falls
    corp: dict[str, list[float]]  # CORP diagram: confidence, recalibrated accuracy, band low/high
    ranges: list[dict[str, Any]] = field(default_factory=list)  # {lo, hi, direction} beyond noise
    draws: int = 0

    @property
    def calibrated(self) -> bool:
        return not any(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "lead": LEAD,
            "lead_why": LEAD_WHY,
            "estimators": {k: v.to_dict() for k, v in self.estimators.items()},
            "tests": {k: {**t.to_dict(), "rejected": self.rejected.get(k, False)} for k, t in self.tests.items()},
            "multiplicity": "Holm step-down over the five tests, family-wise level 0.05",
            "bands": [list(b) if b else None for b in self.bands],
            "corp": self.corp,
            "ranges": self.ranges,
            "draws": self.draws,
        }


def bin_bands(s: est.Sorted, null_y: Tensor, n_bins: int) -> list[tuple[float, float] | None]:
    """Consistency bands (Broecker & Smith 2007): per bin, the 2.5% and 97.5% quantiles of its accuracy
    when outcomes are drawn from the confidences."""
    b = bin_index(s.conf, n_bins)
    cnt = torch.bincount(b, minlength=n_bins).double()
    acc = torch.zeros(len(null_y), n_bins, dtype=torch.float64).index_add_(1, b, null_y.double()) / cnt.clamp_min(1)
    q = torch.quantile(acc, torch.tensor([ALPHA / 2, 1 - ALPHA / 2], dtype=torch.float64), dim=0)
    return [(float(q[0, i]), float(q[1, i])) if cnt[i] else None for i in range(n_bins)]


def corp_curve(s: est.Sorted, null_y: Tensor) -> dict[str, list[float]]:
    """The CORP reliability diagram: the PAV recalibration of the outcomes on the confidences at CURVE_POINTS
    confidences over the data's range, and its consistency band (PAV of outcomes drawn from the confidences)."""
    c = s.conf.numpy()
    grid = np.linspace(c[0], c[-1], CURVE_POINTS)
    fit = np.interp(grid, c, isotonic_regression(s.correct.numpy()).x)
    draws = null_y[:CORP_BAND_DRAWS].double().numpy()
    curves = np.stack([np.interp(grid, c, isotonic_regression(d).x) for d in draws])
    lo, hi = np.quantile(curves, [ALPHA / 2, 1 - ALPHA / 2], axis=0)
    return {"confidence": grid.tolist(), "accuracy": fit.tolist(), "band_low": lo.tolist(), "band_high": hi.tolist()}


def off_ranges(s: est.Sorted, n_bins: int) -> list[dict[str, Any]]:
    """Runs of adjacent equal-width bins whose gap is beyond noise (|z| above the Bonferroni 5% point over the
    occupied bins), merged by direction: [{lo, hi, direction: over-confident | under-confident}]."""
    b = bin_index(s.conf, n_bins)
    resid = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, s.correct - s.conf)
    var = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, s.conf * (1 - s.conf))
    cnt = torch.bincount(b, minlength=n_bins)
    occupied = int((cnt > 0).sum())
    if not occupied:
        return []
    crit = _normal_quantile(1 - ALPHA / (2 * occupied))
    z = torch.where(var > 0, resid / var.clamp_min(1e-300).sqrt(), torch.zeros_like(resid))
    edges = torch.linspace(0, 1, n_bins + 1).tolist()
    out: list[dict[str, Any]] = []
    for i in range(n_bins):
        if not cnt[i] or abs(float(z[i])) <= crit:
            continue
        direction = "under-confident" if z[i] > 0 else "over-confident"
        if out and out[-1]["direction"] == direction and out[-1]["last"] == i - 1:
            out[-1].update(hi=edges[i + 1], last=i)
        else:
            out.append({"lo": edges[i], "hi": edges[i + 1], "direction": direction, "last": i})
    first, last = int(cnt.nonzero()[0]), int(cnt.nonzero()[-1])
    for r in out:
        r["from_bottom"], r["to_top"] = r["lo"] <= edges[first], r.pop("last") >= last
    return out


def _normal_quantile(p: float) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p, dtype=torch.float64)))


def describe(ranges: list[dict[str, Any]]) -> str:
    """'over-confident above 0.80, under-confident below 0.53' from `off_ranges`."""
    parts = []
    for r in ranges:
        if r["to_top"] and not r["from_bottom"]:
            where = f"above {r['lo']:.2f}"
        elif r["from_bottom"] and not r["to_top"]:
            where = f"below {r['hi']:.2f}"
        elif r["from_bottom"] and r["to_top"]:
            where = "at every confidence"
        else:
            where = f"between {r['lo']:.2f} and {r['hi']:.2f}"
        parts.append(f"{r['direction']} {where}")
    return ", ".join(parts)


def collect(
    conf: Tensor,
    correct: Tensor,
    counts: Tensor,
    n_bins: int,
    seed: int,
    *,
    draws: int | None = None,
    known: dict[str, Tensor] | None = None,
    sigma: float | None = None,
) -> Evidence:
    """Every estimator, test and band for top-label confidences and correctness (N,), with the bootstrap
    counts (1 + R, N) of the metrics (row 0 the sample) and `draws` consistency resamples (default R).
    `known`: estimators' values on these counts already computed; `sigma`: smooth ECE's bandwidth if known."""
    ct.check_rows(len(conf))
    s = est.Sorted.of(conf, correct, sigma)
    draws = len(counts) - 1 if draws is None else draws
    null_y = consistency_draws(s.conf, draws, seed)
    kernels = est.estimators(n_bins)
    found = estimate_all(kernels, s, counts, null_y, known)
    tests = {
        "ece": ct.Test(found["ece"].value, found["ece"].p_value, "consistency resampling (Broecker & Smith 2007)"),
        "tcal": ct.tcal(s.conf, s.correct, null_y),
        "kuiper": ct.kuiper(s.conf, s.correct),
        "ks": ct.ks(s.conf, s.correct),
        "spiegelhalter": ct.spiegelhalter(s.conf, s.correct),
    }
    rejected = ct.holm({k: t.p_value for k, t in tests.items()}, ALPHA)
    return Evidence(
        estimators=found,
        tests=tests,
        rejected=rejected,
        bands=bin_bands(s, null_y, n_bins),
        corp=corp_curve(s, null_y),
        ranges=off_ranges(s, n_bins) if any(rejected.values()) else [],
        draws=draws,
    )


def consistency_draws(sorted_conf: Tensor, draws: int, seed: int) -> Tensor:
    """(draws, N) bool outcomes drawn from the confidences (kept as bool: one byte per sample and draw)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    out = torch.empty(draws, len(sorted_conf), dtype=torch.bool)
    for a in range(0, draws, 50):
        r = min(50, draws - a)
        out[a : a + r] = torch.rand(r, len(sorted_conf), generator=gen, dtype=torch.float64) < sorted_conf
    return out


def nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x

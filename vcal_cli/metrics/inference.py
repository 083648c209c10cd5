"""Intervals and noise floors for calibration errors that are biased upward by noise.

A binned ECE is a sum of absolute values: even a perfectly calibrated model shows about 0.01 at 10,000 rows,
and a percentile bootstrap of it adds that bias a second time (its resamples sit above the sample as the
sample sits above the truth). vcal's rule for every calibration-error estimator, chosen by the coverage
study (`benchmarks/bench_intervals.py`, table in docs/metrics.md):

- **debiased point**: 2 x estimate - mean of the bootstrap estimates (the bootstrap's bias correction),
  clipped at 0;
- **interval**: the estimate's bias lies between 0 (a model far from calibrated) and the bias of a calibrated
  model of the same size (the noise floor's mean m, below): [estimate - m - 1.96 sd, estimate + 1.96 sd] with sd the
  bootstrap standard deviation, clipped at 0, covers the truth whatever the bias in that range (without a noise
  floor, below 20 rows: the basic bootstrap interval [2 x estimate - q97.5, 2 x estimate - q2.5]). The basic
  interval alone, which corrects the bias by the bootstrap's own estimate of it, under-covered on miscalibrated
  models (0.85-0.90 at 1,000 rows, and classwise ECE at 100 classes far less: its bias dwarfs its spread);
- **noise floor**: consistency resampling (Broecker & Smith 2007): the outcomes redrawn from the model's own
  probabilities (a top-label outcome is correct with probability equal to the confidence), the estimator
  recomputed on each draw. Its 95% quantile is what a calibrated model with these confidences and this size
  would show at most, and the share of draws at or above the observed value is the p-value
  ((1 + count) / (1 + draws)) of the test "this model is calibrated";
- **reaching 0**: when that test does not reject at 5%, the interval's low end is 0: a calibrated model's
  interval then holds its true value 0, which no bootstrap interval of a non-negative, upward-biased statistic does.

The interval always holds its own (debiased) point.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from vcal_cli.metrics.estimators import Kernel, Rows, Sorted

ALPHA = 0.05
METHOD = (
    "bias-bounded: [estimate - noise-floor mean - 1.96 sd, estimate + 1.96 sd] (bootstrap sd); "
    "0 when the noise-floor test does not reject"
)
ROW_ELEMS = 2_000_000  # resample rows per block x N: each float64 temporary about 16 MB
# The estimators beside the headline ECEs (the table's sweep, debiased L2, CORP and smooth ECE) read this many
# bootstrap and consistency rows of the 200: their sd, noise-floor mean and p-value need no more (the coverage
# study holds at 100), and they cost most of what the statistics add to an audit.
SECONDARY_ROWS = 100


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """One estimator on one sample: what the report's estimator table shows."""

    value: float  # the plug-in estimate on the sample
    debiased: float
    interval: tuple[float, float]
    p_value: float  # the noise-floor test of "calibrated" (consistency resampling)
    noise_floor: float  # 95% quantile of the estimate under calibration at these confidences and size
    null_mean: float  # its mean: the bias a calibrated model of this size shows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a figure that could not be computed (no noise floor below MIN_ROWS rows) is None."""
        d = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}
        d["interval"] = list(self.interval)
        return d


def _in_rows(kernels: dict[str, Kernel], s: Sorted, y: Tensor, w: Tensor | None) -> dict[str, Tensor]:
    """Every kernel on blocks of rows: bootstrap rows (w given, outcomes the sample's) or consistency rows
    (y (R0, N) given, weights one). The blocks keep each (rows, N) float64 temporary near 16 MB."""
    n = len(s.conf)
    step = max(1, ROW_ELEMS // n)
    total = len(y) if w is None else len(w)
    out: dict[str, list[Tensor]] = {k: [] for k in kernels}
    for a in range(0, total, step):
        if w is None:
            yy = y[a : a + step].double()
            rows = Rows(s=s, y=yy, w=torch.ones(len(yy), n, dtype=torch.float64), shared_weights=True)
        else:
            rows = Rows(s=s, y=s.correct, w=w[a : a + step].double())
        for k, kernel in kernels.items():
            out[k].append(kernel(rows))
    return {k: torch.cat(v) for k, v in out.items()}


def reflect(value: float, boot: Tensor, null: Tensor | None, alpha: float = ALPHA) -> Estimate:
    """The rule above, from the sample's estimate, its bootstrap estimates (R,) and its consistency
    estimates (R0,) (None: no noise floor, the interval is the basic bootstrap alone)."""
    boot = boot.double()
    q = torch.quantile(boot, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)).tolist()
    debiased = max(0.0, 2 * value - float(boot.mean()))
    lo, hi = max(0.0, 2 * value - q[1]), max(0.0, 2 * value - q[0])
    p, floor, mean = float("nan"), float("nan"), float("nan")
    if null is not None and len(null):
        p = (1 + int((null >= value - 1e-12).sum())) / (1 + len(null))
        floor = float(torch.quantile(null.double(), 1 - alpha))
        mean = float(null.mean())
        # the bias of a sum of absolute values lies between 0 (far from calibrated) and the bias of a calibrated
        # model, the noise floor's mean: an interval for every bias in that range
        z = Z[alpha] * float(boot.std())
        lo, hi = max(0.0, value - mean - z), value + z
        if p >= alpha:
            lo = 0.0
    lo, hi = min(lo, debiased), max(hi, debiased)
    return Estimate(value=value, debiased=debiased, interval=(lo, hi), p_value=p, noise_floor=floor, null_mean=mean)


Z = {0.05: 1.959963984540054}  # the normal quantile of 1 - alpha / 2
NORMAL = "normal: estimate -/+ 1.96 bootstrap sd"  # `normal_interval`, as report.json settings.intervals names it


def normal_interval(
    point: float, resamples: Tensor, lo: float = -math.inf, hi: float = math.inf
) -> tuple[float, float] | None:
    """point -/+ 1.96 bootstrap standard deviations, clipped to the figure's range [lo, hi] (None with fewer than two
    resamples): the interval of a mean or a ratio of means (accuracy, NLL, Brier, AURC, the gap, paired changes without
    a noise floor, the hierarchy figures, a prediction set's coverage and size). In the coverage studies it held the
    truth more often than the percentile interval of the same 200 resamples, whose end points are single order
    statistics (docs/metrics.md, docs/conformal.md)."""
    if len(resamples) < 2:
        return None
    z = Z[ALPHA] * float(resamples.double().std())
    return (max(lo, point - z), min(hi, point + z))


def estimate_all(
    kernels: dict[str, Kernel],
    s: Sorted,
    counts: Tensor,
    null_y: Tensor | None,
    known: dict[str, Tensor] | None = None,
    primary: tuple[str, ...] = ("ece", "ece_adaptive"),
) -> dict[str, Estimate]:
    """`reflect` for every top-label kernel: counts (1 + R, N) in original order (row 0 the sample itself),
    null_y (R0, N) consistency outcomes in sorted order (or None). `known`: a kernel's values on the sample and
    each resample of these counts, already computed (the metrics' ECEs): its bootstrap pass is skipped. Kernels
    not in `primary` read the first SECONDARY_ROWS resamples and consistency rows only."""
    known = known or {}
    vals: dict[str, Tensor] = dict(known)
    null: dict[str, Tensor] = {}
    for group, rows in ((primary, None), (None, SECONDARY_ROWS)):
        ks = {k: v for k, v in kernels.items() if (k in primary) == (group is not None)}
        todo = {k: v for k, v in ks.items() if k not in known}
        if todo:
            vals.update(_in_rows(todo, s, s.correct, s.weights(counts[: None if rows is None else 1 + rows])))
        if null_y is not None and ks:
            null.update(_in_rows(ks, s, null_y[:rows], None))
    return {k: reflect(float(vals[k][0]), vals[k][1:], null.get(k)) for k in kernels}  # in the kernels' order

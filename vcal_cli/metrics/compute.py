"""Calibration and accuracy metrics, named by their report keys.

All computation is in float64 on the CPU, over row chunks of the (N, C) scores (which may be a
memory-mapped cache larger than memory). Definitions (see the README for the conventions):

- accuracy: mean of argmax == label (ties go to the lowest class index).
- nll: mean negative log-likelihood, log-softmax of the logits (probabilities: log(max(p, 1e-7))).
- brier: mean over samples of the sum over classes of (p - onehot)^2, in [0, 2].
- ece: top-label, equal-width bins [lo, hi) with the last closed at 1.0, sum_b (n_b/N) |acc_b - conf_b|.
- ece_adaptive: the same over equal-count bins from a stable sort of the confidences.
- mce: max over non-empty equal-width bins of |acc_b - conf_b|.
- classwise_ece: mean over classes of the equal-width binary ECE of p[:, c] against 1[y = c].
- aurc: area under the risk-coverage curve of the max-probability score (torch-uncertainty's form).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor

from vcal_cli._defaults import DEFAULT_N_BOOTSTRAP
from vcal_cli._mapped import release_pages
from vcal_cli.errors import MetricError
from vcal_cli.estimation import Statistics
from vcal_cli.metrics._validate import DEFAULT_N_BINS, check_bins, check_labels, check_probs, top_label
from vcal_cli.metrics.calibration import (
    ReliabilityBin,
    adaptive_ece_kernel,
    adaptive_ece_prepare,
    bin_index,
    ece_mce_kernel,
    reliability_bins,
)
from vcal_cli.metrics.calibration_tests import MIN_ROWS
from vcal_cli.metrics.details import Details, details
from vcal_cli.metrics.estimators import Sorted, estimators
from vcal_cli.metrics.evidence import Evidence, collect, consistency_draws
from vcal_cli.metrics.inference import METHOD, NORMAL, SECONDARY_ROWS, Estimate, estimate_all, normal_interval, reflect
from vcal_cli.metrics.scoring import aurc_kernel, aurc_prepare, chunk_stats

__all__ = [
    "Metrics",
    "MetricsResult",
    "METRIC_NAMES",
    "DEFAULT_N_BINS",
    "compute_metrics",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "ece_adaptive",
    "mce",
    "classwise_ece",
    "aurc",
    "ReliabilityBin",
]

DEFAULT_SEED = 0


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """One value per metric; the field names are the report keys."""

    accuracy: float
    nll: float
    brier: float
    ece: float
    ece_adaptive: float
    mce: float
    classwise_ece: float
    aurc: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Metrics))
LOWER_IS_BETTER = {name: name != "accuracy" for name in METRIC_NAMES}


# how each metric's 95% interval is made (report.json settings.intervals; docs/metrics.md has the study)
NORMAL_CLIPPED = f"{NORMAL}, clipped to the metric's range"
# the range each NORMAL_CLIPPED metric is clipped to
RANGES = {"accuracy": (0.0, 1.0), "nll": (0.0, math.inf), "brier": (0.0, 2.0), "aurc": (0.0, 1.0)}
INTERVAL_METHODS = {
    "accuracy": NORMAL_CLIPPED,
    "nll": NORMAL_CLIPPED,
    "brier": NORMAL_CLIPPED,
    "ece": METHOD,
    "ece_adaptive": METHOD,
    "mce": "none: a maximum over bins has no valid bootstrap interval",
    "classwise_ece": METHOD,
    "aurc": NORMAL_CLIPPED,
}
DEBIASED = ("ece", "ece_adaptive", "classwise_ece")  # the metrics biased upward by noise


@dataclass(frozen=True, kw_only=True)
class MetricsResult:
    metrics: Metrics
    intervals: dict[str, tuple[float, float]]  # 95% interval per metric, made as INTERVAL_METHODS says
    reliability: list[ReliabilityBin]
    n: int
    n_bins: int
    n_bootstrap: int
    seed: int
    details: Details | None = None  # gap, smooth ECE, selective accuracy, per class (compute_metrics)
    debiased: dict[str, Estimate] = field(default_factory=dict)  # DEBIASED metrics: point, interval, noise floor
    evidence: Evidence | None = None  # estimators, calibration tests, bands (with details, N >= MIN_ROWS)


ROW_CHUNK_ELEMS = 1 << 20  # elements per float64 temporary (8 MB), whatever N: memory stays flat


@dataclass(frozen=True)
class Scores:
    """Logits or probabilities (N, K) in any float dtype, possibly memory-mapped: read in row chunks."""

    values: Tensor
    is_logits: bool

    def chunks(self, labels: Tensor, rows: int) -> Iterator[tuple[int, Tensor, dict[str, Tensor]]]:
        """(start, probs, per-sample values) in float64 for consecutive row chunks, validated as read.

        The probabilities of a chunk live in one reused buffer: use them before asking for the next chunk."""
        buffer = torch.empty(min(rows, len(self.values)) * self.values.shape[1], dtype=torch.float64)
        for a in range(0, len(self.values), rows):
            x = self.values[a : a + rows]
            if not self.is_logits:
                check_probs(x)
            p, stats = chunk_stats(x, labels[a : a + len(x)], self.is_logits, buffer)
            release_pages(x)  # a memory-mapped cache: this block's pages leave the process
            yield a, p, stats


def make_scores(labels: Tensor, logits: Tensor | None, probs: Tensor | None) -> tuple[Scores, Tensor]:
    """Shape-checked scores and labels (values are checked chunk by chunk as they are read)."""
    if (logits is None) == (probs is None):
        raise ValueError("give exactly one of logits or probs")
    x = torch.as_tensor(logits if logits is not None else probs)
    what = "logits" if logits is not None else "probabilities"
    if x.ndim != 2 or x.shape[0] == 0:
        raise MetricError(f"{what} must have shape (N, C) with N >= 1, got {tuple(x.shape)}")
    return Scores(x, logits is not None), check_labels(labels, len(x), x.shape[1])


def resample_counts(n: int, n_bootstrap: int, seed: int) -> Tensor:
    """(1 + R, N) uint8: row 0 all ones (the sample itself), row r how often each sample is in resample r.

    Resample r draws N indices with replacement from a generator seeded with `seed`; the draws are made
    a few rows at a time, so the largest allocation is this matrix (one byte per sample and resample;
    int16 in the astronomically unlikely case that a sample is drawn more than 255 times).
    """
    gen = torch.Generator().manual_seed(seed)
    counts = torch.ones(1 + n_bootstrap, n, dtype=torch.uint8)
    step = max(1, 2_000_000 // n)
    for s in range(0, n_bootstrap, step):
        idx = torch.randint(0, n, (min(step, n_bootstrap - s), n), generator=gen)
        c = torch.zeros(len(idx), n, dtype=torch.int16).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.int16))
        if counts.dtype == torch.uint8 and c.max() > 255:
            counts = counts.to(torch.int16)
        counts[1 + s : 1 + s + len(idx)] = c.to(counts.dtype)
    return counts


def _scalar_metrics(s: dict[str, Tensor], counts: Tensor, n_bins: int) -> dict[str, Tensor]:
    """Every metric but classwise ECE, for each row of `counts` (R, N), from the per-sample values."""
    n = len(s["conf"])
    out: dict[str, list[Tensor]] = {}
    step = max(1, ROW_CHUNK_ELEMS // n)  # rows of float64 weights at a time (8 MB per temporary)
    # what depends on the samples alone is computed once, not per resample
    bins = bin_index(s["conf"], n_bins)
    up = adaptive_ece_prepare(s["conf"], s["correct"], n_bins)
    down = aurc_prepare(s["conf"], s["correct"])
    for a in range(0, len(counts), step):
        w = counts[a : a + step].double()
        e, m = ece_mce_kernel(s["conf"], s["correct"], w, n_bins, bins)
        vals = {
            "accuracy": (w @ s["correct"]) / n,
            "nll": (w @ s["nll"]) / n,
            "brier": (w @ s["brier"]) / n,
            "ece": e,
            "ece_adaptive": adaptive_ece_kernel(s["conf"], s["correct"], w, n_bins, up),
            "mce": m,
            "aurc": aurc_kernel(s["conf"], s["correct"], w, down),
        }
        for k, v in vals.items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def evaluate_scores(
    sources: list[Scores], labels: Tensor, *, n_bins: int, n_bootstrap: int, seed: int
) -> list[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """For each source: (every metric (1 + R,): the sample then each resample, per-sample values (N,)).

    Every source is resampled with the same rows (the paired bootstrap of `vcal gate`). Each source's
    (N, K) scores are read once, in row chunks, so they may be memory-mapped and larger than memory;
    the largest allocation is the (1 + R, N) uint8 resample counts.
    """
    counts = resample_counts(len(labels), n_bootstrap, seed)
    out = []
    for src in sources:
        stats, cw, _ = _one_pass(src, labels, counts, n_bins)
        out.append(({**_scalar_metrics(stats, counts, n_bins), "classwise_ece": cw}, stats))
    return out


def _one_pass(
    scores: Scores, labels: Tensor, counts: Tensor, n_bins: int, null_draws: int = 0, seed: int = 0
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Per-sample values (N,), classwise ECE for each row of `counts` (1 + R,) and for each of `null_draws`
    consistency resamples (labels redrawn from the model's own probabilities), in one pass over the rows.

    Slot (c, b) sums d = 1[y = c] - p_c over the samples whose p_c falls in bin b. Most of the N x K
    probabilities fall in bin 0 (p < 1/B), so each row chunk adds its few entries of bins >= 1 one by
    one and gets bin 0 as the class total minus those: the class totals are one dense product of the
    resample counts with the probabilities, so the cost is a GEMM, not a scatter of R x N x K. A consistency
    resample changes only the label term: each draw adds one count at (its label, the bin of its label's
    probability) per sample, against the probability sums of the sample itself.
    """
    n, k = scores.values.shape
    drawn = torch.zeros(null_draws, k * n_bins, dtype=torch.float64)  # label counts of each consistency draw
    own = torch.zeros(k * n_bins, dtype=torch.float64)  # label counts of the sample
    r = len(counts)
    stats = {name: torch.empty(n, dtype=torch.float64) for name in ("conf", "correct", "nll", "brier", "pred")}
    totals = torch.zeros(r, k, dtype=torch.float64)
    upper = torch.zeros(r, k * n_bins, dtype=torch.float64)  # slots of bins >= 1 (bin-0 columns stay 0)
    first_edge = 1.0 / n_bins
    for a, p, st in scores.chunks(labels, max(1, ROW_CHUNK_ELEMS // max(k, r))):
        b = a + len(p)
        for name, v in st.items():
            stats[name][a:b] = v
        w = counts[:, a:b].double()
        y = labels[a:b]
        totals.index_add_(1, y, w)  # sum of w * 1[y = c]
        totals.sub_(w @ p)  # minus sum of w * p_c
        rows, cols = (p >= first_edge).nonzero(as_tuple=True)
        if len(rows):
            pv = p[rows, cols]
            d = (y[rows] == cols).double() - pv
            upper.index_add_(1, cols * n_bins + bin_index(pv, n_bins), w[:, rows] * d)
        if null_draws:
            own.index_add_(
                0,
                y * n_bins + bin_index(p.gather(1, y[:, None])[:, 0], n_bins),
                torch.ones(len(y), dtype=torch.float64),
            )
            _draw_labels(p, drawn, n_bins, _uniforms(a, len(p), null_draws, seed))
    slots = upper.view(r, k, n_bins)
    slots[:, :, 0] = totals - slots[:, :, 1:].sum(2)
    stats["class_ece"] = slots[0].abs().sum(1) / n  # (K,): each class's binary ECE on the sample itself
    prob_sums = own - slots[0].reshape(-1)  # sum of p_c over the samples whose p_c falls in bin b
    null = (drawn - prob_sums).abs().sum(1) / (n * k)
    return stats, slots.abs().sum((1, 2)) / (n * k), null  # every row of counts sums to n


UNIFORM_BLOCK = 1024  # rows per seeded block of the consistency draws' uniforms


def _uniforms(start: int, rows: int, draws: int, seed: int) -> Tensor:
    """(rows, draws) uniforms for sample rows start..start+rows, the same however the rows are chunked: each
    block of UNIFORM_BLOCK rows has a generator of its own, seeded by the seed and the block's index."""
    out = []
    for b in range(start // UNIFORM_BLOCK, (start + rows - 1) // UNIFORM_BLOCK + 1):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 104_729 + b)
        block = torch.rand(UNIFORM_BLOCK, draws, generator=gen, dtype=torch.float64)
        lo = max(start, b * UNIFORM_BLOCK) - b * UNIFORM_BLOCK
        hi = min(start + rows, (b + 1) * UNIFORM_BLOCK) - b * UNIFORM_BLOCK
        out.append(block[lo:hi])
    return torch.cat(out)


def _draw_labels(p: Tensor, drawn: Tensor, n_bins: int, u: Tensor) -> None:
    """Add, for each consistency draw (row of `drawn`), a count at (label, bin of its probability) for each row
    of the chunk's probabilities p (rows, K), the label drawn from p by inverting its cumulative sum at the
    uniforms u (rows, draws)."""
    k = p.shape[1]
    cdf = p.cumsum(1)
    u = u * cdf[:, -1:]
    lab = torch.searchsorted(cdf, u).clamp_(max=k - 1)  # (rows, draws)
    slot = lab * n_bins + bin_index(p.gather(1, lab), n_bins)
    drawn.scatter_add_(1, slot.T.contiguous(), torch.ones(len(drawn), len(p), dtype=torch.float64))


def compute_metrics(
    labels: Tensor,
    *,
    logits: Tensor | None = None,
    probs: Tensor | None = None,
    n_bins: int = DEFAULT_N_BINS,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    with_details: bool = True,
    with_tests: bool = True,
) -> MetricsResult:
    """All metrics, their 95% intervals (made as INTERVAL_METHODS says), and the reliability bins; with details,
    the estimator table, calibration tests and consistency bands (`vcal_cli.metrics.evidence`).

    Give exactly one of `logits` (preferred: exact NLL) or `probs`. The bootstrap draws `n_bootstrap`
    resamples of the N samples with replacement from a generator seeded with `seed`. The scores are
    read in row chunks (never copied whole to float64), so a memory-mapped cache larger than memory works.
    `with_tests=False` leaves out everything the calibration statistics add (the consistency resamples, the
    estimator table, the tests and the bands; the ECEs' intervals are then the basic bootstrap's), which is what
    benchmarks/bench_metrics.py --audit times them against.
    """
    check_bins(n_bins)
    Statistics(n_bootstrap=n_bootstrap)  # 0, or at least the 2 resamples a spread needs: the CLI's one-line error
    src, y = make_scores(labels, logits, probs)
    counts = resample_counts(len(y), n_bootstrap, seed)
    tested = n_bootstrap > 0 and len(y) >= MIN_ROWS and with_tests
    # the classwise noise floor's mean and p-value need no more than SECONDARY_ROWS label redraws (each redraw
    # searches every row's K-class cumulative sum: the costliest part of the statistics at 1,000 classes)
    null_draws = min(n_bootstrap, SECONDARY_ROWS) if tested else 0
    stats, cw, cw_null = _one_pass(src, y, counts, n_bins, null_draws, seed)
    vals = {**_scalar_metrics(stats, counts, n_bins), "classwise_ece": cw}
    normal = [k for k in METRIC_NAMES if INTERVAL_METHODS[k] == NORMAL_CLIPPED] if n_bootstrap > 0 else []
    intervals = {k: normal_interval(float(vals[k][0]), vals[k][1:], *RANGES[k]) for k in normal}
    det = details(stats, y, stats["class_ece"], counts) if with_details else None
    evidence, debiased = None, {}
    if n_bootstrap > 0:
        full = with_details and with_tests and tested
        known = {k: vals[k] for k in ("ece", "ece_adaptive")}
        sigma = det.smooth.sigma if det else None
        evidence, debiased = _debiased(stats, counts, n_bins, seed, full, known, sigma, tested)
        debiased["classwise_ece"] = reflect(float(cw[0]), cw[1:], cw_null if tested else None)
        intervals.update({k: e.interval for k, e in debiased.items()})
    return MetricsResult(
        metrics=Metrics(**{k: float(vals[k][0]) for k in METRIC_NAMES}),
        intervals=intervals,
        reliability=reliability_bins(stats["conf"], stats["correct"], n_bins),
        n=len(y),
        n_bins=n_bins,
        n_bootstrap=n_bootstrap,
        seed=seed,
        details=det,
        debiased=debiased,
        evidence=evidence,
    )


def _debiased(
    stats: dict[str, Tensor],
    counts: Tensor,
    n_bins: int,
    seed: int,
    full: bool,
    known: dict[str, Tensor],
    sigma: float | None,
    tested: bool = True,
) -> tuple[Evidence | None, dict[str, Estimate]]:
    """The top-label ECEs' debiased points and intervals; with `full`, every estimator, test and band too.
    `known`: the ECEs' values on the sample and each resample (the metrics computed them)."""
    conf, correct = stats["conf"], stats["correct"]
    if full:
        ev = collect(conf, correct, counts, n_bins, seed, known=known, sigma=sigma)
        return ev, {k: ev.estimators[k] for k in ("ece", "ece_adaptive")}
    s = Sorted.of(conf, correct, sigma=0.0)  # no smooth ECE here: the bandwidth is never used
    kernels = {k: v for k, v in estimators(n_bins).items() if k in known}
    null = consistency_draws(s.conf, len(counts) - 1, seed) if tested else None
    return None, estimate_all(kernels, s, counts, null, known)


def _one(name: str, scores: Tensor, labels: Tensor, n_bins: int, *, is_logits: bool = False) -> float:
    src, y = make_scores(labels, scores if is_logits else None, None if is_logits else scores)
    ((vals, _),) = evaluate_scores([src], y, n_bins=check_bins(n_bins), n_bootstrap=0, seed=0)
    return float(vals[name][0])


def accuracy(probs: Tensor, labels: Tensor) -> float:
    return float(top_label(probs, labels)[1].mean())


def nll(logits: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits)."""
    return _one("nll", logits, labels, DEFAULT_N_BINS, is_logits=True)


def brier(probs: Tensor, labels: Tensor) -> float:
    return _one("brier", probs, labels, DEFAULT_N_BINS)


def _ece_mce(probs: Tensor, labels: Tensor, n_bins: int) -> tuple[float, float]:
    """Top-label ECE and MCE from the confidences alone (single metrics skip the (N, C) float64 work)."""
    conf, correct = top_label(probs, labels)
    e, m = ece_mce_kernel(conf, correct, torch.ones(1, len(conf), dtype=torch.float64), check_bins(n_bins))
    return float(e[0]), float(m[0])


def ece(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    return _ece_mce(probs, labels, n_bins)[0]


def ece_adaptive(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    conf, correct = top_label(probs, labels)
    return float(
        adaptive_ece_kernel(conf, correct, torch.ones(1, len(conf), dtype=torch.float64), check_bins(n_bins))[0]
    )


def mce(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    return _ece_mce(probs, labels, n_bins)[1]


def classwise_ece(probs: Tensor, labels: Tensor, *, n_bins: int = DEFAULT_N_BINS) -> float:
    return _one("classwise_ece", probs, labels, n_bins)


def aurc(probs: Tensor, labels: Tensor) -> float:
    conf, correct = top_label(probs, labels)
    return float(aurc_kernel(conf, correct, torch.ones(1, len(conf), dtype=torch.float64))[0])

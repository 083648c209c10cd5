"""Prediction sets with a coverage guarantee (split conformal prediction), calibrated on val and scored on test.

For a miscoverage level alpha, a score s(x, y) says how unusual label y is for x; the threshold q is the
k-th smallest of the n val scores of the true labels, k = ceil((n + 1)(1 - alpha)) (the finite-sample quantile,
level k / n), and the set of a test x is {y : s(x, y) <= q}. If val and test are exchangeable, the set holds the
true label with probability at least 1 - alpha, and (continuous scores, no ties) at most 1 - alpha + 1/(n + 1)
(Vovk et al. 2005; Angelopoulos & Bates 2023, "Conformal prediction: a gentle introduction", Thm. 1 and D.1).

Scores (`SCORES`):
- `lac`: 1 - p_y (Sadinle, Lei & Wasserman 2019; TorchCP's THR, MAPIE's "lac"). The smallest sets on average.
- `aps` / `aps-rand`: the probability mass of every label at least as likely as y, y included (Romano, Sesia &
  Candes 2020); `-rand` subtracts U * p_y with one U ~ Uniform(0, 1) per example, which makes coverage exact
  (1 - alpha on average) rather than conservative. Sets adapt to how hard x is.
- `raps` / `raps-rand`: APS plus lambda * max(0, o(y) - k_reg), o(y) the 1-based rank of y (Angelopoulos, Bates,
  Malik & Jordan 2021): the penalty trims the long tail APS gives to uncertain examples. k_reg and lambda are given,
  or chosen as the authors do: on a 30% tuning part of val (seeded), k_reg = the ceil((m + 1)(1 - alpha))-th
  smallest 1-based rank of the true label, lambda in {0.001, 0.01, 0.1, 0.2, 0.5} with the smallest mean set size;
  the threshold is then calibrated on the other 70%, so the guarantee holds as stated.
- `lac-class`: class-conditional (Mondrian) LAC (Vovk 2012; TorchCP's ClassWisePredictor): one threshold per class
  from the val examples of that class, so coverage holds within every class, at the price of larger sets.

Ties: labels of equal probability are ranked by index (a stable sort), as TorchCP does. Randomised scores draw U
from a generator seeded with `seed` (val) and `seed + 1` (test): the sets are reproducible.

Reported per (score, alpha): test coverage and mean set size with bootstrap 95% intervals, the median size, the
share of empty and singleton sets, size-stratified coverage (Angelopoulos et al. 2021's buckets) and its worst
bucket, the class-conditional coverage gap CovGap = mean over classes of |coverage_c - (1 - alpha)| (Ding et al.
2023) with its interval and noise floor, and the worst class. Intervals (`CONFORMAL_INTERVALS`, chosen by
`benchmarks/bench_conformal_intervals.py`): coverage and mean size are means, so the estimate -/+ 1.96 bootstrap
sd; CovGap is a mean of absolute values, biased upward by noise like a binned ECE, so the bias-bounded interval of
`metrics.inference`, whose noise floor is the CovGap of sets that cover every class at exactly 1 - alpha.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vcal_cli._defaults import CONFORMAL_SCORES, DEFAULT_N_BOOTSTRAP, DEFAULT_RISK_DELTA
from vcal_cli.errors import UsageError
from vcal_cli.metrics._validate import check_labels, check_probs
from vcal_cli.metrics.inference import NORMAL, normal_interval, reflect

SCORES = CONFORMAL_SCORES
CONFORMAL_INTERVALS = {
    "coverage": f"{NORMAL}, clipped to [0, 1]",
    "set_size": f"{NORMAL}, clipped to [0, K]",
    "cov_gap": "bias-bounded against the CovGap of sets exact in every class (cov_gap_noise_floor); 0 when it does "
    "not reject",
}
RAPS_LAMBDAS = (0.001, 0.01, 0.1, 0.2, 0.5)  # the authors' grid (Angelopoulos et al. 2021, their code's default)
RAPS_TUNE = 0.3  # the share of val that tunes k_reg and lambda (their `pct_paramtune`)
STRATA = ((0, 1), (2, 3), (4, 6), (7, 10), (11, 100), (101, 1000), (1001, 10**9))  # set sizes, Angelopoulos et al.
CHUNK = 8192  # rows scored at once: bounds memory at 1,000 classes


@dataclass(frozen=True, kw_only=True)
class ConformalOptions:
    """What `--conformal` and `--target-risk` ask for: miscoverage levels, scores, RAPS's k_reg and lambda (None:
    tuned on val), and the abstention's target selective risk and delta (`vcal_cli.metrics.risk_control`)."""

    alphas: tuple[float, ...] = ()
    scores: tuple[str, ...] | None = None  # None: every score the val split supports (`check_options` resolves it)
    k_reg: int | None = None
    lam: float | None = None
    target_risk: float | None = None
    delta: float = DEFAULT_RISK_DELTA
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    seed: int = 0

    def __bool__(self) -> bool:
        return bool(self.alphas) or self.target_risk is not None


def parse_alphas(text: str | None) -> tuple[float, ...]:
    """`--conformal 0.1,0.05` -> (0.1, 0.05); each must lie in (0, 1)."""
    if not text:
        return ()
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or any(not (0 < v < 1) for v in vals):
        raise UsageError(f"--conformal '{text}' must be comma-separated miscoverage levels in (0, 1), e.g. 0.1,0.05")
    return tuple(dict.fromkeys(vals))


def check_options(
    o: ConformalOptions, val_labels: Tensor | None = None, class_names: list[str] | None = None
) -> tuple[ConformalOptions, dict[str, str]]:
    """Check the options against the val split's labels before any extraction, and settle the scores: a bad score,
    k_reg or lambda, or an alpha too small for the val split (RAPS calibrates on 70% of it when it tunes k_reg and
    lambda; `lac-class` on each class's rows) is an error when asked for by name. With the default (every score), a
    class-conditional threshold the val split cannot support is skipped instead, with the reason returned."""
    named = o.scores is not None
    scores = tuple(o.scores) if named else SCORES
    if not scores:
        raise UsageError("--conformal-scores names no score", hint=f"choose from: {', '.join(SCORES)}")
    for s in scores:
        if s not in SCORES:
            raise UsageError(f"--conformal-scores: '{s}' is not a score; choose from: {', '.join(SCORES)}")
    if o.k_reg is not None and o.k_reg < 0:
        raise UsageError(f"--raps-k-reg {o.k_reg} must be 0 or more")
    if o.lam is not None and not (math.isfinite(o.lam) and o.lam >= 0):
        raise UsageError(f"--raps-lambda {o.lam} must be a number >= 0")
    skipped: dict[str, str] = {}
    if val_labels is not None and o.alphas:
        n = len(val_labels)
        tuned = any(s.startswith("raps") for s in scores) and (o.k_reg is None or o.lam is None)
        for alpha in o.alphas:
            quantile_rank(n - int(n * RAPS_TUNE) if tuned else n, alpha)
        if "lac-class" in scores:
            try:
                _check_classes(val_labels, o.alphas, class_names)
            except UsageError as e:
                if named:
                    raise
                skipped["lac-class"] = str(e).removeprefix("--conformal-scores lac-class: ")
                scores = tuple(s for s in scores if s != "lac-class")
    return dataclasses.replace(o, scores=scores), skipped


def _check_classes(labels: Tensor, alphas: tuple[float, ...], names: list[str] | None) -> None:
    counts = torch.bincount(labels.long(), minlength=len(names) if names else 0)
    for c, n in enumerate(counts.tolist()):
        name = _name(c, names)
        if n == 0:
            raise UsageError(
                f"--conformal-scores lac-class: class '{name}' has no val example, so no class-conditional threshold",
                hint="drop lac-class or use a val split that holds every class",
            )
        for alpha in alphas:
            quantile_rank(n, alpha, f"val examples of class '{name}' (lac-class)")


def quantile_rank(n: int, alpha: float, what: str = "val examples") -> int:
    """k = ceil((n + 1)(1 - alpha)): the threshold is the k-th smallest of n calibration scores. k > n means the
    calibration split is too small for alpha (the set would have to hold every label): an error naming the smallest
    alpha it supports."""
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if k > n:
        smallest = 1 / (n + 1)
        raise UsageError(
            f"--conformal {alpha:g} needs at least {math.ceil((1 - alpha) / alpha - 1e-9)} {what} and there "
            f"are {n}; the smallest alpha {n} examples support is {smallest:.3g}",
            hint="give a larger alpha or a larger val split",
        )
    return max(k, 1)


def _uniform(n: int, seed: int, randomized: bool, dtype: torch.dtype) -> Tensor | None:
    if not randomized:
        return None
    return torch.rand(n, 1, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def label_scores(probs: Tensor, score: str, u: Tensor | None = None, k_reg: int = 0, lam: float = 0.0) -> Tensor:
    """The conformity score of every label, (N, K): lower means more typical. `u` (N, 1) randomises APS/RAPS."""
    if score.startswith("lac"):
        return 1 - probs
    ordered, order = probs.sort(dim=1, descending=True, stable=True)
    cum = ordered.cumsum(dim=1)
    if u is not None:
        cum = cum - u * ordered
    if score.startswith("raps") and lam > 0:
        ranks = torch.arange(1, probs.shape[1] + 1, dtype=probs.dtype)
        cum = cum + lam * (ranks - k_reg).clamp_min(0)
    return torch.empty_like(cum).scatter_(1, order, cum)


def true_scores(probs: Tensor, labels: Tensor, score: str, u: Tensor | None, k_reg: int, lam: float) -> Tensor:
    """The score of each example's true label, computed in row chunks."""
    out = []
    for i in range(0, len(labels), CHUNK):
        s = label_scores(probs[i : i + CHUNK], score, None if u is None else u[i : i + CHUNK], k_reg, lam)
        out.append(s.gather(1, labels[i : i + CHUNK, None])[:, 0])
    return torch.cat(out) if out else probs.new_zeros(0)


@dataclass(kw_only=True)
class Calibrated:
    """A score calibrated on val at one alpha: the threshold(s) and how they were found."""

    score: str
    alpha: float
    threshold: Tensor  # () or, for lac-class, (K,)
    n: int  # calibration examples used for the threshold
    rank: int  # k of the k-th smallest (the smallest per-class k for lac-class)
    k_reg: int = 0
    lam: float = 0.0
    seed: int = 0

    @property
    def randomized(self) -> bool:
        return self.score.endswith("-rand")

    def sets(self, probs: Tensor, seed: int | None = None) -> Tensor:
        """(N, K) booleans: label y is in the set of row i. Randomised scores draw U with `seed` (default seed + 1)."""
        probs = probs.double()
        u = _uniform(len(probs), self.seed + 1 if seed is None else seed, self.randomized, probs.dtype)
        out = []
        for i in range(0, len(probs), CHUNK):
            s = label_scores(
                probs[i : i + CHUNK], self.score, None if u is None else u[i : i + CHUNK], self.k_reg, self.lam
            )
            out.append(s <= self.threshold)
        return torch.cat(out) if out else torch.zeros(0, probs.shape[1], dtype=torch.bool)

    def describe(self) -> dict[str, Any]:
        t = self.threshold
        return {
            # the spread of the coverage over val draws: given val, coverage is Beta(k, n + 1 - k) (Vovk 2012;
            # Angelopoulos & Bates, sec. C), sd ~ sqrt(alpha (1 - alpha) / (n + 2)); test's bootstrap misses it
            "calibration_sd": math.sqrt(self.alpha * (1 - self.alpha) / (self.n + 2)),
            "threshold": float(t) if t.ndim == 0 else {"min": float(t.min()), "max": float(t.max())},
            "n_calibration": self.n,
            "quantile_rank": self.rank,
            "quantile_level": self.rank / self.n,
            **({"k_reg": self.k_reg, "lambda": self.lam} if self.score.startswith("raps") else {}),
            "randomized": self.randomized,
        }


def calibrate(
    probs: Tensor,
    labels: Tensor,
    score: str,
    alpha: float,
    *,
    k_reg: int | None = None,
    lam: float | None = None,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> Calibrated:
    """Calibrate `score` at `alpha` on val probabilities (N, K) and labels (N,)."""
    if score not in SCORES:
        raise UsageError(f"'{score}' is not a conformal score; choose from: {', '.join(SCORES)}")
    probs, labels = probs.double(), labels.long()
    if score.startswith("raps"):
        if k_reg is None or lam is None:
            probs, labels, k_reg, lam = _tune_raps(probs, labels, alpha, k_reg, lam, seed)
    k_reg, lam = int(k_reg or 0), float(lam or 0.0)
    u = _uniform(len(labels), seed, score.endswith("-rand"), probs.dtype)
    s = true_scores(probs, labels, score, u, k_reg, lam)
    if score == "lac-class":
        return _calibrate_classwise(s, labels, probs.shape[1], alpha, seed, class_names)
    k = quantile_rank(len(s), alpha)
    q = s.kthvalue(k).values
    return Calibrated(score=score, alpha=alpha, threshold=q, n=len(s), rank=k, k_reg=k_reg, lam=lam, seed=seed)


def _calibrate_classwise(
    s: Tensor, labels: Tensor, k_classes: int, alpha: float, seed: int, names: list[str] | None
) -> Calibrated:
    qs, ranks = torch.empty(k_classes, dtype=s.dtype), []
    for c in range(k_classes):
        sc = s[labels == c]
        name = names[c] if names and c < len(names) else str(c)
        if len(sc) == 0:
            raise UsageError(
                f"--conformal-scores lac-class: class '{name}' has no val example, so no class-conditional threshold",
                hint="drop lac-class or use a val split that holds every class",
            )
        k = quantile_rank(len(sc), alpha, f"val examples of class '{name}' (lac-class)")
        qs[c] = sc.kthvalue(k).values
        ranks.append(k)
    return Calibrated(score="lac-class", alpha=alpha, threshold=qs, n=len(s), rank=min(ranks), seed=seed)


def _tune_raps(
    probs: Tensor, labels: Tensor, alpha: float, k_reg: int | None, lam: float | None, seed: int
) -> tuple[Tensor, Tensor, int, float]:
    """The authors' choice of k_reg and lambda on a tuning part of val; returns the rest of val (to calibrate on)
    with them."""
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    m = int(n * RAPS_TUNE)
    tune, rest = perm[:m], perm[m:]
    if m < 2 or len(rest) < 2:
        raise UsageError(
            f"--conformal: RAPS tunes k_reg and lambda on {RAPS_TUNE:.0%} of val, and {n} val examples "
            "are too few; give --raps-k-reg and --raps-lambda"
        )
    tp, ty = probs[tune], labels[tune]
    if k_reg is None:
        ranks = (tp > tp.gather(1, ty[:, None])).sum(1) + 1  # the 1-based rank of the true label
        k_reg = int(ranks.kthvalue(min(quantile_rank_lenient(m, alpha), m)).values)
    if lam is None:
        sizes = []
        for cand in RAPS_LAMBDAS:
            st = true_scores(tp, ty, "raps", None, k_reg, cand)
            q = st.kthvalue(min(quantile_rank_lenient(m, alpha), m)).values
            size = sum(
                int((label_scores(tp[i : i + CHUNK], "raps", None, k_reg, cand) <= q + 1e-12).sum())
                for i in range(0, m, CHUNK)
            )
            sizes.append(size)
        lam = RAPS_LAMBDAS[min(range(len(sizes)), key=lambda i: (sizes[i], i))]
    return probs[rest], labels[rest], k_reg, lam


def quantile_rank_lenient(n: int, alpha: float) -> int:
    """ceil((n + 1)(1 - alpha)) capped at n: for tuning, where no guarantee is claimed."""
    return min(max(math.ceil((n + 1) * (1 - alpha) - 1e-9), 1), n)


def set_metrics(
    sets: Tensor,
    labels: Tensor,
    alpha: float,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Coverage, set sizes, size-stratified and class-conditional coverage of prediction sets (N, K) on test."""
    labels = labels.long()
    n, k = sets.shape
    covered = sets.gather(1, labels[:, None])[:, 0].double()
    sizes = sets.sum(1).double()
    per_class_n = torch.bincount(labels, minlength=k).double()
    per_class = torch.bincount(labels, weights=covered, minlength=k) / per_class_n.clamp_min(1)
    present = per_class_n > 0
    gap = float(_cov_gap(labels[None], covered[None], k, alpha)[0])
    worst = int(torch.where(present, per_class, torch.full_like(per_class, math.inf)).argmin())
    strata = []
    for lo, hi in STRATA:
        sel = (sizes >= lo) & (sizes <= hi)
        if sel.any():
            strata.append(
                {
                    "sizes": f"{lo}-{hi}" if hi < 10**9 else f"{lo}+",
                    "n": int(sel.sum()),
                    "coverage": float(covered[sel].mean()),
                }
            )
    cap = min(k, 20)
    hist = torch.bincount(sizes.long().clamp_max(cap + 1), minlength=cap + 2).tolist()
    out: dict[str, Any] = {
        "alpha": alpha,
        "target": 1 - alpha,
        "n": n,
        "coverage": float(covered.mean()),
        "set_size": float(sizes.mean()),
        "set_size_median": float(sizes.median()),
        "empty": float((sizes == 0).double().mean()),
        "singleton": float((sizes == 1).double().mean()),
        "size_strata": strata,
        "ssc": min(s["coverage"] for s in strata),
        "cov_gap": gap,
        "worst_class": {"class": _name(worst, class_names), "coverage": float(per_class[worst])},
        "size_histogram": {"sizes": [*map(str, range(cap + 1)), f">{cap}"], "counts": hist},
        **({"per_class_coverage": per_class.tolist()} if k <= 100 else {}),
    }
    if n_bootstrap > 0:
        out["intervals"], out["cov_gap_noise_floor"] = _bootstrap(
            covered, sizes, labels, k, alpha, n_bootstrap, seed, gap
        )
    return out


def _name(c: int, names: list[str] | None) -> str:
    return str(names[c]) if names and c < len(names) else str(c)


def _bootstrap(
    covered: Tensor, sizes: Tensor, labels: Tensor, k: int, alpha: float, b: int, seed: int, gap_point: float
) -> tuple[dict[str, list[float]], float]:
    """95% intervals from `b` resamples of test (with replacement): coverage and mean set size, each a mean, get the
    estimate -/+ 1.96 bootstrap sd (clipped to their range); CovGap, a mean of absolute values biased upward by
    noise as a binned ECE is, gets the bias-bounded interval of `inference.reflect` against its noise floor: the
    CovGap of sets whose coverage is exactly 1 - alpha in every class (each test row covered with probability
    1 - alpha, the class counts kept), `b` draws. Its low end is 0 when that floor does not reject. Also returned:
    the floor (the 95% quantile of those draws' CovGap)."""
    n = len(labels)
    g = torch.Generator().manual_seed(seed)
    cov, size, gap, null = [], [], [], []
    step = max(1, 4_000_000 // max(n, 1))  # resamples at once: bounded memory
    for start in range(0, b, step):
        m = min(step, b - start)
        idx = torch.randint(n, (m, n), generator=g)
        c = covered[idx]
        cov.append(c.mean(1))
        size.append(sizes[idx].mean(1))
        gap.append(_cov_gap(labels[idx], c, k, alpha))
        exact = (torch.rand(m, n, generator=g, dtype=torch.float64) < 1 - alpha).double()
        null.append(_cov_gap(labels.expand(m, n), exact, k, alpha))
    gap_estimate = reflect(gap_point, torch.cat(gap), torch.cat(null))
    none = (math.nan, math.nan)
    intervals = {
        "coverage": list(normal_interval(float(covered.mean()), torch.cat(cov), 0.0, 1.0) or none),
        "set_size": list(normal_interval(float(sizes.mean()), torch.cat(size), 0.0, float(k)) or none),
        "cov_gap": list(gap_estimate.interval),
    }
    return intervals, gap_estimate.noise_floor


def _cov_gap(labels: Tensor, covered: Tensor, k: int, alpha: float) -> Tensor:
    """CovGap of each row of (R, N) labels and covered indicators: mean over the classes present of
    |coverage_c - (1 - alpha)|."""
    r = len(labels)
    flat = (torch.arange(r)[:, None] * k + labels).reshape(-1)
    cnt = torch.bincount(flat, minlength=r * k).reshape(r, k).double()
    hit = torch.bincount(flat, weights=covered.reshape(-1).double(), minlength=r * k).reshape(r, k)
    dev = ((hit / cnt.clamp_min(1)) - (1 - alpha)).abs() * (cnt > 0)
    return dev.sum(1) / (cnt > 0).sum(1).clamp_min(1)


def conformal_sets(
    val_probs: Tensor,
    val_labels: Tensor,
    test_probs: Tensor,
    test_labels: Tensor,
    options: ConformalOptions,
    class_names: list[str] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, float], Calibrated]]:
    """Every (score, alpha) of `options`, calibrated on val and scored on test: report.json's `conformal`
    ({score: {alpha: row}}) and the calibrations (to score shifted test sets with the same thresholds)."""
    val_labels = check_labels(val_labels, len(check_probs(val_probs)), val_probs.shape[1])
    test_labels = check_labels(test_labels, len(check_probs(test_probs)), test_probs.shape[1])
    rows: dict[str, dict[str, Any]] = {}
    fitted: dict[tuple[str, float], Calibrated] = {}
    for score in options.scores or SCORES:
        for alpha in options.alphas:
            cal = calibrate(
                val_probs,
                val_labels,
                score,
                alpha,
                k_reg=options.k_reg,
                lam=options.lam,
                seed=options.seed,
                class_names=class_names,
            )
            m = set_metrics(
                cal.sets(test_probs),
                test_labels,
                alpha,
                n_bootstrap=options.n_bootstrap,
                seed=options.seed,
                class_names=class_names,
            )
            rows.setdefault(score, {})[f"{alpha:g}"] = {"score": score, **m, **cal.describe()}
            fitted[score, alpha] = cal
    return rows, fitted


def shifted_sets(fitted: dict[tuple[str, float], Calibrated], probs: Tensor, labels: Tensor) -> dict[str, Any]:
    """Coverage and mean set size of every calibration (val thresholds, unchanged) on a shifted test split."""
    out: dict[str, Any] = {}
    for (score, alpha), cal in fitted.items():
        sets = cal.sets(probs)
        covered = sets.gather(1, labels.long()[:, None])[:, 0].double()
        out.setdefault(score, {})[f"{alpha:g}"] = {
            "coverage": float(covered.mean()),
            "set_size": float(sets.sum(1).double().mean()),
        }
    return out

"""The statistics behind an audit's verdict: estimators, tests, intervals and noise floors, each against an
independent reference on the same inputs (MAPIE 1.6, the `uncertainty-calibration` package of Kumar et al.,
scikit-learn's isotonic regression, relplot, naive transcriptions of the papers' formulas) or, for a test's
size and an interval's rule, against simulations with a known truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vcal_cli.errors import MetricError
from vcal_cli.metrics import calibration_tests as ct
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics import estimators as est
from vcal_cli.metrics.compute import resample_counts
from vcal_cli.metrics.evidence import collect, describe
from vcal_cli.metrics.inference import reflect


def _sample(n: int, seed: int, truth=lambda c: c) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidences in [0.1, 1) and outcomes drawn with P(correct) = truth(c)."""
    g = torch.Generator().manual_seed(seed)
    c = 0.1 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    return c, (torch.rand(n, generator=g, dtype=torch.float64) < truth(c)).double()


def _two_sided(c: torch.Tensor) -> torch.Tensor:
    pivot = float(torch.quantile(c, 0.6))
    return torch.where(c > pivot, c - 0.10, (c + 0.07).clamp(max=1.0))


def _ones(n: int) -> torch.Tensor:
    return torch.ones(1, n, dtype=torch.float64)


def _run(kernel, c: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    s = est.Sorted.of(c, y)
    return kernel(est.Rows(s=s, y=s.correct, w=_ones(len(c)) if w is None else s.weights(w)))


# --- tests against MAPIE 1.6 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cumulative_tests_match_mapie(seed: int) -> None:
    from mapie.metrics import calibration as mc

    c, y = _sample(3000, seed, lambda c: c**1.1)
    yn, cn = y.numpy().astype(int), c.numpy()
    ks, ku, sp = ct.ks(c, y), ct.kuiper(c, y), ct.spiegelhalter(c, y)
    # MAPIE jitters the scores by 1e-8 (relative) before it sorts and differences them; these scores have no
    # ties, so the order is the same and the jitter moves the statistics by about 1e-8 of their size: rel 1e-6
    assert ks.statistic == pytest.approx(mc.kolmogorov_smirnov_statistic(yn, cn), rel=1e-6)
    assert ks.p_value == pytest.approx(mc.kolmogorov_smirnov_p_value(yn, cn), abs=1e-6)
    assert ku.statistic == pytest.approx(mc.kuiper_statistic(yn, cn), rel=1e-6)
    assert ku.p_value == pytest.approx(mc.kuiper_p_value(yn, cn), abs=1e-6)
    assert sp.statistic == pytest.approx(mc.spiegelhalter_statistic(yn, cn), rel=1e-9)
    one_sided = mc.spiegelhalter_p_value(yn, cn)  # MAPIE: 1 - Phi(Z); vcal: two-sided
    assert sp.p_value == pytest.approx(2 * min(one_sided, 1 - one_sided), abs=1e-9)


def test_brownian_cdfs_match_mapie_on_a_grid() -> None:
    from mapie.metrics import calibration as mc

    for x in (0.3, 0.8, 1.0, 1.5, 2.2, 3.5):
        assert ct.ks_cdf(x) == pytest.approx(mc.kolmogorov_smirnov_cdf(x), abs=1e-12)
        assert ct.kuiper_cdf(x) == pytest.approx(mc.kuiper_cdf(x), abs=1e-12)
    # MAPIE's docstring examples (hand-checked values of the two series)
    assert round(ct.ks_cdf(1.0), 4) == 0.3708


# --- estimators against their references ----------------------------------------------------------------------


def test_debiased_l2_matches_verified_calibration() -> None:
    """Kumar et al.'s own package (`uncertainty-calibration`, p-lambda/verified_calibration) on the same (N, K)."""
    import calibration as vc

    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(2 * torch.randn(4000, 10, generator=g, dtype=torch.float64), 1)
    labels = torch.multinomial(probs**1.3 / (probs**1.3).sum(1, keepdim=True), 1, generator=g)[:, 0]
    ref = vc.lower_bound_scaling_ce(
        probs.numpy(),
        labels.numpy(),
        p=2,
        debias=True,
        num_bins=15,
        binning_scheme=vc.get_equal_bins,
        mode="top-label",
    )
    conf, pred = probs.max(1)
    ours = float(_run(lambda r: est.ece_l2_debiased(r, 15), conf, (pred == labels).double())[0])
    assert ours == pytest.approx(ref, abs=1e-12)


def test_corp_matches_sklearn_isotonic() -> None:
    from sklearn.isotonic import IsotonicRegression

    c, y = _sample(5000, 3, lambda c: c**1.4)
    fit = IsotonicRegression().fit_transform(c.numpy(), y.numpy())
    assert float(_run(est.ece_corp, c, y)[0]) == pytest.approx(np.abs(c.numpy() - fit).mean(), abs=1e-12)


def test_smooth_batch_matches_relplot_at_a_fixed_bandwidth() -> None:
    import relplot

    c, y = _sample(3000, 4, lambda c: c**1.2)
    s = est.Sorted.of(c, y)
    ours = float(est.ece_smooth(est.Rows(s=s, y=s.correct, w=_ones(3000)))[0])
    assert ours == pytest.approx(relplot.smECE_sigma(s.conf.numpy(), s.correct.numpy(), s.sigma), abs=1e-6)


def _sweep_naive(c: np.ndarray, y: np.ndarray) -> float:
    """Roelofs et al.'s ECE_sweep read off the paper: equal-mass bins (np.array_split of the sorted sample), the
    largest b (from 1 up, stopping at the first failure) whose bin accuracies never decrease; L1, mass-weighted."""
    order = np.argsort(c, kind="stable")
    c, y = c[order], y[order]
    best = abs(y.mean() - c.mean())
    for b in range(2, len(c) + 1):
        parts = np.array_split(np.arange(len(c)), b)
        acc = np.array([y[p].mean() for p in parts])
        if np.any(np.diff(acc) < 0):
            break
        best = sum(len(p) * abs(y[p].mean() - c[p].mean()) for p in parts) / len(c)
    return best


@pytest.mark.parametrize("seed", [0, 1])
def test_sweep_matches_a_naive_reading_of_the_paper(seed: int) -> None:
    c, y = _sample(800, seed, lambda c: c**2)
    assert float(_run(est.ece_sweep, c, y)[0]) == pytest.approx(_sweep_naive(c.numpy(), y.numpy()), abs=1e-12)


@pytest.mark.parametrize("name", ["ece", "ece_adaptive", "ece_sweep", "ece_l2_debiased", "ece_corp", "ece_smooth"])
def test_resample_weights_equal_the_materialised_resample(name: str) -> None:
    """A kernel with counts w gives the estimator on the resample with each sample repeated w times."""
    c, y = _sample(600, 6, lambda c: c**1.3)
    counts = resample_counts(600, 3, 11)[1:]
    kernel = est.estimators(15)[name]
    weighted = _run(kernel, c, y, counts)
    for r in range(3):
        idx = torch.repeat_interleave(torch.arange(600), counts[r].long())
        cr, yr = c[idx], y[idx]
        s = est.Sorted.of(cr, yr)
        s = est.Sorted(
            conf=s.conf, correct=s.correct, order=s.order, sigma=est.Sorted.of(c, y).sigma
        )  # the sample's bandwidth
        plain = float(kernel(est.Rows(s=s, y=s.correct, w=_ones(len(cr))))[0])
        assert float(weighted[r]) == pytest.approx(plain, abs=1e-9), (name, r)


def test_tcal_statistic_matches_the_pairwise_formula() -> None:
    """Lee et al.'s debiased plug-in estimate: sum over bins of sum_{i != j} d_i d_j / (n_b - 1), over N."""
    c, y = _sample(300, 8, lambda c: c**1.5)
    d = (c - y).numpy()
    best = -math.inf
    for m in ct.tcal_bins(300):
        idx = np.minimum(np.floor(m * c.numpy()).astype(int), m)
        total = 0.0
        for b in np.unique(idx):
            v = d[idx == b]
            if len(v) >= 2:
                total += (np.outer(v, v).sum() - (v * v).sum()) / (len(v) - 1)
        best = max(best, total / 300)
    assert float(ct.tcal_statistic(c, y)[0]) == pytest.approx(best, abs=1e-12)
    assert ct.tcal_bins(300) == [2, 4, 8, 16, 32]  # 2^1 .. 2^(floor(log2 300) - 3)


# --- the rules: intervals, noise floor, multiplicity ---------------------------------------------------------


def test_reflect_rule_hand_worked() -> None:
    boot = torch.linspace(0.10, 0.20, 201, dtype=torch.float64)  # mean 0.15, q2.5 0.1025, q97.5 0.1975
    sd = float(boot.std())
    e = reflect(0.12, boot, None)  # no noise floor (fewer than 20 rows): the basic bootstrap interval
    assert e.debiased == pytest.approx(0.09)
    assert e.interval == pytest.approx((max(0.0, 0.24 - 0.1975), 0.24 - 0.1025))
    calm = reflect(0.12, boot, torch.full((99,), 0.5, dtype=torch.float64))  # far below the noise floor
    assert calm.p_value == 1.0 and calm.interval[0] == 0.0
    loud = reflect(0.12, boot, torch.full((99,), 0.01, dtype=torch.float64))  # calibrated models show 0.01
    assert loud.p_value == pytest.approx(1 / 100)
    # bias-bounded: the estimate less the bias of a calibrated model (0.01) less 1.96 sd, up to the estimate + 1.96 sd
    assert loud.interval == pytest.approx((0.12 - 0.01 - 1.959963984540054 * sd, 0.12 + 1.959963984540054 * sd))
    assert loud.interval[0] <= loud.debiased <= loud.interval[1]


def test_holm_step_down() -> None:
    assert ct.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": True, "b": False, "c": False}  # 0.03 > 0.05/2
    assert ct.holm({"a": 0.01, "b": 0.02, "c": 0.04}) == {"a": True, "b": True, "c": True}
    assert ct.holm({"a": 0.2, "b": float("nan")}) == {"a": False, "b": False}


def test_tests_keep_their_size_and_find_two_sided_miscalibration() -> None:
    """Simulated reference: on calibrated samples each test rejects about 5% of the time (at most 3 of 40 here,
    about the 90th percentile of Binomial(40, 0.05)), and all reject the issue's two-sided model."""
    rejections = {k: 0 for k in ("ece", "tcal", "kuiper", "ks", "spiegelhalter")}
    for seed in range(40):
        c, y = _sample(2000, 100 + seed)
        ev = collect(c, y, resample_counts(2000, 99, seed), 15, seed)
        for k, t in ev.tests.items():
            rejections[k] += t.p_value < 0.05
    assert all(v <= 4 for v in rejections.values()), rejections
    c, y = _sample(10_000, 7, _two_sided)
    ev = collect(c, y, resample_counts(10_000, 99, 0), 15, 0)
    assert all(ev.rejected.values()) and not ev.calibrated
    text = describe(ev.ranges)
    assert "over-confident above" in text and "under-confident" in text, text


def test_calibrated_model_interval_reaches_zero_and_holds_its_point() -> None:
    """The issue's case: labels drawn from the model's own softmax, 10 classes, 10,000 rows."""
    holds = 0
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        z = 2 * torch.randn(10_000, 10, generator=g, dtype=torch.float64)
        y = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
        r = compute_metrics(y, logits=z, seed=seed)
        for k in ("ece", "ece_adaptive", "classwise_ece"):
            lo, hi = r.intervals[k]
            assert lo <= r.debiased[k].debiased <= hi, k  # the interval holds its own point
        holds += r.intervals["ece"][0] == 0.0 and r.intervals["classwise_ece"][0] == 0.0
    assert holds >= 8  # the true value 0 is inside in (about) 95% of draws; the old percentile interval: 0 of 40


def test_two_sided_model_is_not_called_calibrated() -> None:
    """Over-confident above the 60th percentile of confidence (+0.10), under-confident below (-0.07): the gaps
    cancel in the mean, so the old verdict said 'calibrated within noise' in 6 of 8 draws."""
    from vcal_cli.reports.schema import AuditReport
    from vcal_cli.reports.summary import audit_summary

    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        z = 2 * torch.randn(10_000, 10, generator=g, dtype=torch.float64)
        p = torch.softmax(z, 1)
        conf, top = p.max(1)
        rest = p.clone()
        rest[torch.arange(10_000), top] = 0
        other = torch.multinomial(rest, 1, generator=g)[:, 0]
        hit = torch.rand(10_000, generator=g, dtype=torch.float64) < _two_sided(conf)
        r = compute_metrics(torch.where(hit, top, other), logits=z, seed=seed)
        report = AuditReport(
            checkpoint={"path": None}, data={"name": "sim", "split": "test", "n": 10_000}, result=r
        ).to_dict()
        s = audit_summary(report)
        assert s["verdict"] == "over- and under-confident", s["lines"][0]
        assert "over-confident above" in s["lines"][0]


def test_report_json_holds_tests_and_methods_without_nan() -> None:
    from vcal_cli.reports.schema import AuditReport

    c, _ = _sample(500, 1)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (500,), generator=g)
    r = compute_metrics(y, logits=z)
    text = AuditReport(checkpoint={"path": None}, data={"name": "sim", "split": "test", "n": 500}, result=r).to_json()
    rep = json.loads(text, parse_constant=lambda x: pytest.fail(f"{x} in report.json"))
    for name in ("ece", "tcal", "kuiper", "ks", "spiegelhalter"):
        assert {"statistic", "p_value"} <= rep["tests"][name].keys()
    assert rep["settings"]["intervals"]["ece"].startswith("bias-bounded")
    assert rep["settings"]["intervals"]["accuracy"].startswith("normal")
    assert rep["settings"]["intervals"]["gap"].startswith("normal")
    assert "noise floor" in rep["settings"]["intervals"]["paired"]
    assert "mce" not in rep["intervals"]
    assert len(rep["calibration"]["bands"]) == len(rep["reliability"])


def test_too_few_rows() -> None:
    """Below MIN_ROWS the tests are refused by the API and left out of an audit (which still has its metrics)."""
    c, y = _sample(10, 0)
    with pytest.raises(MetricError, match="at least 20"):
        ct.check_rows(10)
    with pytest.raises(MetricError, match="at least 20"):
        collect(c, y, resample_counts(10, 20, 0), 15, 0)
    z = torch.randn(10, 3, dtype=torch.float64)
    r = compute_metrics(torch.arange(10) % 3, logits=z)
    assert r.evidence is None and math.isnan(r.debiased["ece"].p_value)
    assert r.intervals["ece"][0] <= r.debiased["ece"].debiased <= r.intervals["ece"][1]


def test_one_class_present() -> None:
    z = torch.randn(300, 4, dtype=torch.float64)
    r = compute_metrics(torch.zeros(300, dtype=torch.long), logits=z)
    assert r.evidence is not None and set(r.evidence.tests) == {"ece", "tcal", "kuiper", "ks", "spiegelhalter"}


@pytest.mark.parametrize("name", ["ece", "ece_adaptive", "ece_sweep", "ece_l2_debiased", "ece_corp", "ece_smooth"])
def test_consistency_rows_take_the_shared_weight_shortcut_exactly(name: str) -> None:
    """Consistency rows (every weight one, outcomes per row) give what the general weighted path gives."""
    c, y = _sample(601, 6, lambda c: c**1.3)
    s = est.Sorted.of(c, y)
    yy = (torch.rand(4, 601, generator=torch.Generator().manual_seed(5), dtype=torch.float64) < s.conf).double()
    kernel = est.estimators(15)[name]
    ones = torch.ones(4, 601, dtype=torch.float64)
    shared = kernel(est.Rows(s=s, y=yy, w=ones, shared_weights=True))
    general = kernel(est.Rows(s=s, y=yy, w=ones.clone()))
    torch.testing.assert_close(shared, general, rtol=0, atol=1e-12)

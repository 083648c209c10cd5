"""Prediction sets and risk-controlled abstention: hand-worked examples, the same thresholds and sets as TorchCP and
MAPIE on the same probabilities, the coverage guarantee over many random splits, SGR's bound and guarantee, the
commands, the gate and bad input."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vcal_cli.cli import app
from vcal_cli.errors import UsageError
from vcal_cli.metrics.conformal import (
    ConformalOptions,
    calibrate,
    conformal_sets,
    label_scores,
    parse_alphas,
    set_metrics,
)
from vcal_cli.metrics.risk_control import abstention, guaranteed_threshold, risk_bound

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = SAMPLES / "cnn_digits.safetensors"


def _problem(n: int, k: int = 5, seed: int = 0, sharp: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (n, k) and labels drawn from them (so the probabilities are calibrated): continuous scores."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) * sharp, 1)
    labels = torch.multinomial(probs, 1, generator=g)[:, 0]
    return probs, labels


# --- hand-worked --------------------------------------------------------------------------------------------------


def test_lac_and_aps_by_hand() -> None:
    """Four val rows over three classes; alpha 0.25 -> k = ceil(5 * 0.75) = 4: the largest of the four scores."""
    p = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    lac = calibrate(p, y, "lac", 0.25)
    assert lac.rank == 4 and float(lac.threshold) == pytest.approx(0.9)  # 1 - p_y: 0.3, 0.7, 0.9, 0.5
    # APS: mass of the labels at least as likely as y, y included: 0.7, 0.8, 1.0, 0.5
    assert label_scores(p, "aps").gather(1, y[:, None])[:, 0].tolist() == pytest.approx([0.7, 0.8, 1.0, 0.5])
    aps = calibrate(p, y, "aps", 0.25)
    assert float(aps.threshold) == pytest.approx(1.0)
    test = torch.tensor([[0.6, 0.35, 0.05]], dtype=torch.float64)
    assert lac.sets(test).tolist() == [[True, True, False]]  # 1 - p <= 0.9: 0.4 and 0.65 are in, 0.95 is not
    # RAPS with lambda 1, k_reg 1: the second label pays 1, the third 2
    r = label_scores(test, "raps", None, k_reg=1, lam=1.0)
    assert r[0].tolist() == pytest.approx([0.6, 0.95 + 1, 1.0 + 2])


def test_the_quantile_is_the_finite_sample_one_and_too_small_a_val_is_an_error() -> None:
    p, y = _problem(19)
    c = calibrate(p, y, "lac", 0.1)
    assert c.rank == 18 and c.rank == math.ceil(20 * 0.9)
    with pytest.raises(UsageError, match="smallest alpha 19 examples support is 0.05"):
        calibrate(p, y, "lac", 0.04)


def test_class_conditional_needs_every_class_in_val() -> None:
    p, y = _problem(200, k=4)
    y[y == 3] = 0
    with pytest.raises(UsageError, match="class '3' has no val example"):
        calibrate(p, y, "lac-class", 0.1)


@pytest.mark.parametrize("text", ["0", "1", "1.5", "x", ""])
def test_alphas_outside_0_1_are_refused(text: str) -> None:
    if text == "":
        assert parse_alphas(text) == ()
        return
    with pytest.raises(UsageError, match="--conformal"):
        parse_alphas(text)


# --- against TorchCP and MAPIE ------------------------------------------------------------------------------------


def _torchcp():
    """TorchCP's classification package. Its training losses import `torchsort`, an sdist that compiles against torch
    (not installable without a C++ toolchain); the scores and predictors compared here never call it, so it is
    stubbed when missing."""
    if "torchsort" not in sys.modules:
        try:
            import torchsort  # noqa: F401
        except ImportError:
            stub = types.ModuleType("torchsort")
            stub.soft_rank = stub.soft_sort = None  # type: ignore[attr-defined]
            sys.modules["torchsort"] = stub
    return pytest.importorskip("torchcp.classification")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("lac", ("LAC", {})),
        ("aps", ("APS", {"randomized": False})),
        ("raps", ("RAPS", {"randomized": False, "penalty": 0.05, "kreg": 2})),
    ],
)
def test_same_threshold_and_sets_as_torchcp(ours: str, theirs: tuple[str, dict]) -> None:
    tcp = _torchcp()
    from torchcp.classification.predictor import SplitPredictor

    vp, vy = _problem(500, k=8, seed=1)
    tp, _ = _problem(300, k=8, seed=2)
    name, kw = theirs
    mine = calibrate(vp, vy, ours, 0.1, k_reg=2, lam=0.05)
    # score_type identity: TorchCP scores the probabilities as given (vcal's heads hand over probabilities too)
    pred = SplitPredictor(getattr(tcp.score, name)(score_type="identity", **kw))
    pred.calculate_threshold(vp, vy, alpha=0.1)
    # TorchCP builds RAPS's penalty lambda * (rank - k_reg) in float32 (an int arange times a Python float), so its
    # threshold differs from the float64 one here by ~1e-9; LAC and APS agree to 1e-12
    assert float(pred.q_hat) == pytest.approx(float(mine.threshold), abs=1e-8 if ours == "raps" else 1e-12)
    theirs_sets = pred.predict_with_logits(tp).bool()
    assert torch.equal(mine.sets(tp), theirs_sets)


def test_same_thresholds_and_sets_as_torchcp_class_conditional() -> None:
    tcp = _torchcp()
    from torchcp.classification.predictor import ClassConditionalPredictor

    vp, vy = _problem(800, k=6, seed=3)
    tp, _ = _problem(300, k=6, seed=4)
    pred = ClassConditionalPredictor(tcp.score.LAC(score_type="identity"))
    pred.calculate_threshold(vp, vy, alpha=0.1)
    mine = calibrate(vp, vy, "lac-class", 0.1)
    assert torch.allclose(pred.q_hat.double(), mine.threshold, atol=1e-12)
    assert torch.equal(mine.sets(tp), pred.predict_with_logits(tp).bool())


def test_same_sets_as_mapie() -> None:
    """MAPIE's LAC (split, prefit) on the same probabilities: the ceil((n + 1)(1 - alpha))-th smallest score, as
    here; MAPIE compares with a machine-precision slack, so sets may differ only where a test score is within 1e-12 of
    the threshold (none on continuous scores)."""
    mapie = pytest.importorskip("mapie.classification")
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Lookup(ClassifierMixin, BaseEstimator):
        """A 'model' whose input is a row index into fixed probabilities."""

        def __init__(self, probs=None):
            self.probs = probs

        def fit(self, x, y):
            self.classes_ = np.arange(self.probs.shape[1])
            return self

        def predict_proba(self, x):
            return self.probs[np.asarray(x)[:, 0].astype(int)]

        def predict(self, x):
            return self.predict_proba(x).argmax(1)

    vp, vy = _problem(600, k=7, seed=5)
    tp, _ = _problem(400, k=7, seed=6)
    allp = torch.cat([vp, tp]).numpy()
    est = Lookup(allp).fit(None, None)
    m = mapie.SplitConformalClassifier(est, confidence_level=0.9, conformity_score="lac", prefit=True)
    m.conformalize(np.arange(600)[:, None], vy.numpy())
    _, sets = m.predict_set(np.arange(600, 1000)[:, None])
    theirs = torch.from_numpy(sets[:, :, 0])
    assert torch.equal(calibrate(vp, vy, "lac", 0.1).sets(tp), theirs)


# --- the guarantee ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("score", ["lac", "aps", "aps-rand", "lac-class"])
def test_coverage_guarantee_over_random_splits(score: str) -> None:
    """Over 400 random val/test splits of a calibrated synthetic problem (n = 150 val), the mean test coverage lies in
    [1 - alpha, 1 - alpha + 1/(n + 1)] (Angelopoulos & Bates, Thm. D.1; for the class-conditional score the upper
    end is per class, so only the lower end is checked), to three Monte-Carlo standard errors."""
    alpha, n, k = 0.1, 150, 4
    probs, labels = _problem(20_000, k=k, seed=7)
    g = torch.Generator().manual_seed(8)
    covs = []
    for i in range(400):
        perm = torch.randperm(len(labels), generator=g)
        val, test = perm[:n], perm[n : n + 1000]
        c = calibrate(probs[val], labels[val], score, alpha, seed=i)
        sets = c.sets(probs[test])
        covs.append(sets.gather(1, labels[test][:, None]).double().mean())
    cov = torch.stack(covs)
    se = float(cov.std() / math.sqrt(len(cov)))
    assert float(cov.mean()) >= 1 - alpha - 3 * se
    if score in ("lac", "aps"):
        assert float(cov.mean()) <= 1 - alpha + 1 / (n + 1) + 3 * se
    if score == "aps-rand":  # randomised: exact on average
        assert abs(float(cov.mean()) - (1 - alpha)) <= 1 / (n + 1) + 3 * se


def test_set_metrics_against_a_direct_computation() -> None:
    vp, vy = _problem(1000, k=5, seed=9)
    tp, ty = _problem(2000, k=5, seed=10)
    rows, fitted = conformal_sets(vp, vy, tp, ty, ConformalOptions(alphas=(0.1,), scores=("aps",), n_bootstrap=50))
    r = rows["aps"]["0.1"]
    sets = fitted["aps", 0.1].sets(tp)
    covered = sets[torch.arange(len(ty)), ty]
    assert r["coverage"] == pytest.approx(float(covered.double().mean()))
    assert r["set_size"] == pytest.approx(float(sets.sum(1).double().mean()))
    per = [float(covered[ty == c].double().mean()) for c in range(5)]
    assert r["cov_gap"] == pytest.approx(sum(abs(x - 0.9) for x in per) / 5)
    assert r["worst_class"]["coverage"] == pytest.approx(min(per))
    assert r["intervals"]["coverage"][0] <= r["coverage"] <= r["intervals"]["coverage"][1]
    assert sum(s["n"] for s in r["size_strata"]) == len(ty)


def _sets_covering(labels: torch.Tensor, k: int, rates: torch.Tensor, seed: int) -> torch.Tensor:
    """Singleton sets that hold the label of a class-c row with probability rates[c] (another class otherwise)."""
    g = torch.Generator().manual_seed(seed)
    hit = torch.rand(len(labels), generator=g, dtype=torch.float64) < rates[labels]
    chosen = torch.where(hit, labels, (labels + 1) % k)
    return torch.nn.functional.one_hot(chosen, k).bool()


def test_set_metrics_intervals_are_normal_and_cov_gaps_floor_is_simulated_independently() -> None:
    """Coverage and size: the estimate -/+ 1.96 bootstrap sd, whose sd is the binomial one (10%); CovGap's noise
    floor: the 95% quantile of the CovGap of sets exact in every class, simulated here with numpy's own binomial
    draws on the same class counts (within 15%: two Monte Carlo quantiles of 400 and 20,000 draws)."""
    k, n, alpha = 8, 3000, 0.1
    labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(3))
    sets = _sets_covering(labels, k, torch.full((k,), 0.9, dtype=torch.float64), seed=4)
    r = set_metrics(sets, labels, alpha, n_bootstrap=400, seed=5)
    lo, hi = r["intervals"]["coverage"]
    assert (lo + hi) / 2 == pytest.approx(r["coverage"])
    assert (hi - lo) / 3.92 == pytest.approx(math.sqrt(r["coverage"] * (1 - r["coverage"]) / n), rel=0.1)
    assert r["intervals"]["set_size"] == [1.0, 1.0]  # every set a singleton: no spread, clipped to the range
    counts = np.bincount(labels.numpy(), minlength=k)
    draws = np.random.default_rng(0).binomial(counts, 0.9, size=(20_000, k)) / counts
    floor = np.quantile(np.abs(draws - 0.9).mean(1), 0.95)
    assert r["cov_gap_noise_floor"] == pytest.approx(floor, rel=0.15)


def test_cov_gap_interval_holds_zero_for_exact_sets_and_excludes_it_for_uneven_ones() -> None:
    """CovGap is biased upward by noise (a mean of absolute values): its interval reaches its true value 0 when every
    class is covered at exactly 1 - alpha (in at least 36 of 40 draws; the floor's test has size 5%), and excludes 0
    when half the classes are covered at 0.80 and half at 1.00 (true CovGap 0.10) in every draw, holding 0.10 in at
    least 36."""
    k, n, alpha = 10, 2000, 0.1
    exact, above_zero, held = 0, 0, 0
    rates = torch.tensor([0.8, 1.0] * 5, dtype=torch.float64)
    for seed in range(40):
        labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(100 + seed))
        r = set_metrics(_sets_covering(labels, k, torch.full((k,), 0.9, dtype=torch.float64), seed), labels, alpha)
        exact += r["intervals"]["cov_gap"][0] == 0.0
        lo, hi = set_metrics(_sets_covering(labels, k, rates, seed), labels, alpha)["intervals"]["cov_gap"]
        above_zero += lo > 0
        held += lo <= 0.1 <= hi
    assert exact >= 36
    assert above_zero == 40
    assert held >= 36


# --- risk-controlled abstention -----------------------------------------------------------------------------------


def test_risk_bound_is_clopper_pearson() -> None:
    from scipy.stats import beta, binom

    for errors, n, delta in ((0, 150, 0.05), (3, 200, 0.01), (40, 1000, 0.1)):
        b = risk_bound(errors, n, delta)
        assert b == pytest.approx(beta.ppf(1 - delta, errors + 1, n - errors), rel=1e-9)
        assert binom.cdf(errors, n, b) == pytest.approx(delta, rel=1e-6)


def test_sgr_guarantee_over_random_splits() -> None:
    """Over 200 val draws, the true selective risk of the threshold SGR returns (measured on 20,000 fresh examples)
    exceeds the target in at most a delta share of draws (plus three binomial standard errors)."""
    target, delta = 0.1, 0.1
    probs, labels = _problem(60_000, k=4, seed=11, sharp=3.0)
    conf, pred = probs.max(1)
    correct = pred == labels
    g = torch.Generator().manual_seed(12)
    test = torch.arange(40_000, 60_000)
    misses = 0
    for _ in range(200):
        val = torch.randperm(40_000, generator=g)[:1000]
        t = guaranteed_threshold(conf[val], correct[val], target, delta)["threshold"]
        if t is None:
            continue
        acc = conf[test] >= t
        misses += float((~correct[test][acc]).double().mean()) > target
    assert misses / 200 <= delta + 3 * math.sqrt(delta * (1 - delta) / 200)


def test_abstention_reports_what_it_promises() -> None:
    vp, vy = _problem(3000, k=4, seed=13, sharp=3.0)
    tp, ty = _problem(3000, k=4, seed=14, sharp=3.0)
    r = abstention(vp, vy, tp, ty, target=0.05, delta=0.05)
    conf, pred = tp.max(1)
    acc = conf >= r["threshold"]
    assert r["coverage"] == pytest.approx(float(acc.double().mean()))
    assert r["selective_risk"] == pytest.approx(float((pred[acc] != ty[acc]).double().mean()))
    assert r["bound"] <= 0.05 and 0 < r["coverage"] < 1
    none = abstention(vp[:20], vy[:20], tp, ty, target=0.001, delta=0.05)
    assert none["threshold"] is None and none["coverage"] == 0


# --- commands, gate, bad input ------------------------------------------------------------------------------------


def test_audit_retrain_and_gate_read_the_sets(runner, tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "audit",
            str(CNN),
            "--data",
            "digits",
            "--conformal",
            "0.1,0.2",
            "--target-risk",
            "0.05",
            "--bootstrap",
            "20",
            "--out",
            "a",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    row = rep["conformal"]["lac"]["0.1"]
    assert {"score", "alpha", "coverage", "set_size", "cov_gap", "worst_class"} <= set(row)
    assert row["alpha"] == 0.1 and 0.8 < row["coverage"] <= 1 and row["set_size"] >= 1 - row["empty"]
    assert set(rep["conformal"]) == {"lac", "aps", "aps-rand", "raps", "raps-rand", "lac-class"}
    assert rep["risk_control"]["target_risk"] == 0.05
    assert "90% sets (" in r.stderr and "labels on average; coverage" in r.stderr and "prediction sets" in r.stdout
    assert (tmp_path / "a" / "conformal.png").is_file()
    assert "Prediction sets" in (tmp_path / "a" / "report.md").read_text()
    ok = runner.invoke(
        app, ["gate", "a/report.json", "--baseline", "a/report.json", "--min", "conformal.lac.0.1.coverage=0.5"]
    )
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(
        app, ["gate", "a/report.json", "--baseline", "a/report.json", "--max", "conformal.aps.0.1.set_size=0.5"]
    )
    assert bad.exit_code == 1, bad.output
    t = runner.invoke(
        app,
        [
            "retrain",
            str(CNN),
            "--data",
            "digits",
            "--head",
            "temperature",
            "--conformal",
            "0.1",
            "--conformal-scores",
            "lac,aps",
            "--bootstrap",
            "0",
            "--out",
            "b",
            "--shift",
            "--corruptions",
            "gaussian_noise",
            "--severities",
            "3",
        ],
    )
    assert t.exit_code == 0, t.output
    heads = json.loads((tmp_path / "b" / "report.json").read_text())["heads"]
    assert set(heads["temperature"]["conformal"]) == {"lac", "aps"}
    assert set(heads["original"]["conformal"]) == {"lac", "aps"}
    shifted = heads["temperature"]["shift"][0]["sets"]["lac"]["0.1"]
    assert 0 <= shifted["coverage"] <= 1 and shifted["set_size"] >= 0


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--conformal", "1.5"], "--conformal '1.5'"),
        (["--conformal", "0.001"], "smallest alpha"),
        (["--conformal", "0.1", "--conformal-scores", "lac,nope"], "'nope' is not a score"),
        (["--target-risk", "2"], "--target-risk 2"),
        (["--target-risk", "0.1", "--delta", "0"], "--delta 0"),
    ],
)
def test_bad_conformal_input_is_one_line(runner, args: list[str], expect: str) -> None:
    line = one_line_error(runner.invoke(app, ["audit", str(CNN), "--data", "digits", *args]))
    assert expect in line, line


def test_python_api_on_arrays_from_any_framework() -> None:
    """NumPy logits in, the same rows the commands write out; probabilities give the same sets as their logits."""
    from vcal_cli import ConformalOptions, prediction_sets

    vp, vy = _problem(800, k=5, seed=15)
    tp, ty = _problem(800, k=5, seed=16)
    risk = ConformalOptions(alphas=(0.1,), target_risk=0.2, n_bootstrap=0)
    a = prediction_sets(vp.log().numpy(), vy.numpy(), tp.log().numpy(), ty.numpy(), options=risk)
    sets = ConformalOptions(alphas=(0.1,), n_bootstrap=0)
    b = prediction_sets(vp.numpy(), vy.numpy(), tp.numpy(), ty.numpy(), options=sets, probs=True)
    assert set(a) == {"conformal", "risk_control"} and set(b) == {"conformal"}
    for score in ("lac", "aps", "raps", "lac-class"):
        assert a["conformal"][score]["0.1"]["coverage"] == pytest.approx(b["conformal"][score]["0.1"]["coverage"])
        assert a["conformal"][score]["0.1"]["set_size"] == pytest.approx(b["conformal"][score]["0.1"]["set_size"])


def test_gate_compares_set_figures_with_their_own_intervals() -> None:
    """A relative rule on a conformal figure uses the row's bootstrap interval for the noise test, as metrics do."""
    from vcal_cli.gate.result import evaluate
    from vcal_cli.gate.rules import Rule, interval, resolve

    def rep(size: float, half: float) -> dict:
        row = {
            "score": "aps",
            "alpha": 0.1,
            "coverage": 0.9,
            "set_size": size,
            "intervals": {"set_size": [size - half, size + half], "coverage": [0.89, 0.91]},
        }
        return {"metrics": {}, "conformal": {"aps": {"0.1": row}}}

    base, cur = rep(1.20, 0.01), rep(1.40, 0.01)
    assert resolve(cur, "conformal.aps.0.1.set_size", "cur") == 1.40
    assert interval(cur, "conformal.aps.0.1.set_size") == (1.39, 1.41)
    rule = Rule("conformal.aps.0.1.set_size", "max_increase", 0.1)
    assert not evaluate([rule], base, cur)[0].passed  # +0.20, far beyond the intervals
    noisy = rep(1.40, 0.5)
    assert evaluate([rule], base, noisy)[0].passed  # the same change inside the noise

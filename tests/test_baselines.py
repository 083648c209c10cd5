"""The baselines users compare with, each against an independent reference on the same inputs:
vector / matrix scaling and Dirichlet-ODIR against SciPy's L-BFGS-B on a NumPy objective, isotonic
regression against scikit-learn's CalibratedClassifierCV, histogram binning against netcal; the
compositions `X+temperature` and `--head auto`'s cross-fitted selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax

from vcal_cli.estimation import Statistics
from vcal_cli.heads import FitData, build_module, get_head
from vcal_cli.heads.select import AutoOptions, select_head


def _miscalibrated(n: int = 1500, k: int = 4, seed: int = 0) -> tuple[FitData, FitData, torch.nn.Linear]:
    """Noisy features whose original head is over-confident and biased per class (vector scaling helps)."""
    g = torch.Generator().manual_seed(seed)
    d = 6
    means = torch.randn(k, d, generator=g)
    y = torch.randint(0, k, (2 * n,), generator=g)
    x = means[y] + 1.2 * torch.randn(2 * n, d, generator=g)
    base = torch.nn.Linear(d, k)
    with torch.no_grad():
        base.weight.copy_(means * 4 * torch.linspace(0.5, 2, k)[:, None])
        base.bias.copy_(torch.linspace(-1, 1, k))
        logits = base(x)
    return FitData(x[:n], logits[:n], y[:n]), FitData(x[n:], logits[n:], y[n:]), base


def _scipy_map(z: np.ndarray, y: np.ndarray, kind: str, lam: float = 0.0) -> tuple[np.ndarray, float]:
    """An independent fit: the same objective in NumPy, minimised by SciPy's L-BFGS-B (numerical gradients)."""
    k = z.shape[1]
    x = log_softmax(z, axis=1) if kind == "dirichlet" else z
    off = ~np.eye(k, dtype=bool)

    def unpack(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (t[:k], t[k:]) if kind == "vector" else (t[: k * k].reshape(k, k), t[k * k :])

    def f(t: np.ndarray) -> float:
        w, b = unpack(t)
        out = (x * w if kind == "vector" else x @ w.T) + b
        nll = -log_softmax(out, axis=1)[np.arange(len(y)), y].mean()
        if kind == "dirichlet":
            nll += lam * (w[off] ** 2).mean() + lam * (b**2).mean()
        return nll

    t0 = np.concatenate([np.ones(k) if kind == "vector" else np.eye(k).ravel(), np.zeros(k)])
    r = minimize(f, t0, method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10})
    return r.x, float(r.fun)


@pytest.mark.parametrize("name", ["vector", "matrix", "dirichlet"])
def test_logit_maps_match_scipy(name: str) -> None:
    train, val, base = _miscalibrated()
    cls = get_head(name)
    head = cls(cls.make_params(**({"odir": 0.01} if name == "dirichlet" else {"ridge": 0.0}))).fit(
        train, val, base=base
    )  # the paper's objectives: ODIR at lambda 0.01; vector and matrix unregularised
    z, y = val.logits.double().numpy(), val.labels.numpy()
    ref_params, ref_loss = _scipy_map(z, y, name, 0.01)
    # the optimum's objective: never above the reference by more than 1e-7; below it by at most 1e-6 (SciPy's
    # finite-difference gradients stop up to 3e-7 short of the analytic optimum with scipy 1.17; more would
    # mean another objective)
    assert ref_loss - 1e-6 <= head.val_loss_ <= ref_loss + 1e-7, (head.val_loss_, ref_loss)
    m = head.module_
    ours = np.concatenate([m.weight.detach().double().numpy().ravel(), m.bias.detach().double().numpy()])
    # the maps, not the raw parameters: the objective is nearly flat along a softmax shift, where two solvers
    # stop 3e-3 apart (more or less with the BLAS thread count); the predictions they give agree to 1e-3
    k = z.shape[1]
    x = log_softmax(z, axis=1) if name == "dirichlet" else z

    def predict(t: np.ndarray) -> np.ndarray:
        w, b = (t[:k], t[k:]) if name == "vector" else (t[: k * k].reshape(k, k), t[k * k :])
        return np.exp(log_softmax((x * w if name == "vector" else x @ w.T) + b, axis=1))

    assert np.abs(predict(ours) - predict(ref_params)).max() < 1e-3
    temp = get_head("temperature")().fit(train, val, base=base)
    nll = lambda h: float(-h.predict_log_proba(val.features).gather(1, val.labels[:, None]).mean())  # noqa: E731
    assert nll(head) < nll(temp)  # per-class miscalibration: more freedom than one T fits val better


@pytest.mark.parametrize("name", ["vector", "matrix", "dirichlet"])
def test_logit_maps_cross_validate_their_penalty(name: str) -> None:
    train, val, base = _miscalibrated(n=300, k=6, seed=1)
    head = get_head(name)().fit(train, val, base=base)
    assert head.lambda_ in head.cv_ and head.cv_[head.lambda_] == min(head.cv_.values())


def test_ridge_keeps_vector_scaling_finite_on_a_separable_val() -> None:
    """The digits sample's failure: its 180 val images are nearly separable, so unregularised vector scaling
    drives the logits to infinite scale and every test mistake to an enormous NLL (37 against the original's
    0.14). The cross-validated pull towards the original logits keeps it bounded."""
    from vcal_cli.api import load_features

    from .conftest import SAMPLES

    loaded, tr, _ = load_features(str(SAMPLES / "cnn_digits.safetensors"), "digits", "train")
    splits = {s: load_features(loaded, "digits", s)[1] for s in ("val", "test")}
    fd = {s: FitData(f.features, f.logits, f.labels) for s, f in (("train", tr), *splits.items())}
    test = fd["test"]
    nll = lambda h: float(-h.predict_log_proba(test.features).gather(1, test.labels[:, None]).mean())  # noqa: E731
    cls = get_head("vector")
    free = cls(cls.make_params(ridge=0.0)).fit(fd["train"], fd["val"], base=loaded.head)
    held = cls().fit(fd["train"], fd["val"], base=loaded.head)
    original = float(torch.nn.functional.cross_entropy(test.logits, test.labels))
    assert nll(free) > 5 * original  # the failure is real
    assert nll(held) < 2 * original, (nll(held), original, held.lambda_)


def _frozen(probs: np.ndarray):
    """A fitted scikit-learn classifier whose predict_proba returns given probabilities (indexed by row id)."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Given(ClassifierMixin, BaseEstimator):
        def __init__(self, probs: np.ndarray | None = None) -> None:
            self.probs = probs

        def fit(self, x, y):
            self.classes_ = np.arange(self.probs.shape[1])
            return self

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return self.probs[x[:, 0].astype(int)]

        def predict(self, x: np.ndarray) -> np.ndarray:
            return self.predict_proba(x).argmax(1)

    return Given(probs).fit(None, None)


def test_isotonic_ovr_matches_scikit_learn() -> None:
    from sklearn.calibration import CalibratedClassifierCV

    FrozenEstimator = pytest.importorskip("sklearn.frozen").FrozenEstimator  # scikit-learn >= 1.6

    train, val, base = _miscalibrated()
    head = get_head("isotonic")().fit(train, val, base=base)
    pv = torch.softmax(val.logits.double(), 1).numpy()
    pt = torch.softmax(train.logits.double(), 1).numpy()
    both = np.concatenate([pv, pt])
    ids_val, ids_test = np.arange(len(pv))[:, None], np.arange(len(pv), len(both))[:, None]
    ref = CalibratedClassifierCV(FrozenEstimator(_frozen(both)), method="isotonic").fit(ids_val, val.labels.numpy())
    expect = ref.predict_proba(ids_test)
    got = head.module_.calibrated_probs(torch.from_numpy(pt)).numpy()
    assert np.abs(got - expect).max() < 1e-9


def test_histogram_ovr_matches_netcal() -> None:
    from netcal.binning import HistogramBinning

    train, val, base = _miscalibrated()
    head = get_head("histogram")().fit(train, val, base=base)
    pv = torch.softmax(val.logits.double(), 1).numpy()
    pt = torch.softmax(train.logits.double(), 1).numpy()
    expect = HistogramBinning(bins=10).fit(pv, val.labels.numpy()).transform(pt)
    got = head.module_.calibrated_probs(torch.from_numpy(pt)).numpy()
    assert np.abs(got - expect).max() < 1e-9


@pytest.mark.parametrize("name", ["isotonic", "histogram"])
def test_top_label_maps_the_confidence_and_keeps_a_distribution(name: str) -> None:
    train, val, base = _miscalibrated()
    head = get_head(name)(get_head(name).make_params(map_mode="top")).fit(train, val, base=base)
    p = torch.softmax(train.logits.double(), 1)
    q = head.module_.calibrated_probs(p)
    assert torch.allclose(q.sum(1), torch.ones(len(q), dtype=torch.float64), atol=1e-12)
    conf, top = p.max(1)
    expect = head.module_._apply_map(0, conf).clamp(0, 1)
    assert torch.allclose(q.gather(1, top[:, None])[:, 0], expect, atol=1e-12)
    # the others keep their proportions
    other = (top + 1) % p.shape[1]
    rest = p.scatter(1, top[:, None], 0.0).sum(1)
    keep = rest > 1e-12
    ratio = q.gather(1, other[:, None])[:, 0] / p.gather(1, other[:, None])[:, 0]
    assert torch.allclose(ratio[keep], ((1 - expect) / rest)[keep], rtol=1e-9)


def test_any_head_then_temperature() -> None:
    train, val, base = _miscalibrated()
    cls = get_head("ce+temperature")
    head = cls(cls.make_params(epochs=3)).fit(train, val, base=base)
    inner = head.inner_.predict_log_proba(val.features)
    t = head.temperature_
    assert torch.allclose(head.predict_log_proba(val.features), torch.log_softmax(inner / t, 1), atol=1e-6)
    rebuilt = build_module(head.info())
    rebuilt.load_state_dict(head.module_.state_dict())
    assert torch.equal(rebuilt.eval()(val.features), head.module_(val.features))
    assert get_head("vector+temperature").fits_on == "val"


def test_auto_scores_heads_fitted_on_val_by_cross_fitting() -> None:
    train, val, base = _miscalibrated(n=400)
    sel = select_head(
        train, val, candidates=("temperature", "isotonic", "vector"), base=base, stats=Statistics(n_bootstrap=50)
    )
    for name in ("isotonic", "temperature"):  # judged on folds they did not see, not on the val they fitted
        h = sel.heads[name]
        in_sample = float(-h.predict_log_proba(val.features).gather(1, val.labels[:, None]).mean())
        assert sel.scores[name]["nll"] > in_sample, name
    best = min(sel.scores, key=lambda n: sel.scores[n]["nll"])
    assert sel.picked.name == best and sel.runner_up in sel.scores and sel.interval is not None
    assert "picked" in sel.reason() and sel.runner_up in sel.reason()


def test_auto_select_ece_judges_the_margin_with_the_bias_bounded_interval() -> None:
    """With `--auto-select ece` the winner's margin gets the paired interval the gate and the retrain verdicts use for
    ECE-type changes: bias-bounded by both candidates' noise floors (`metrics.paired`), not the plain paired interval
    (which missed the truth: docs/metrics.md). Recomputed here from the candidates' val predictions."""
    from vcal_cli.metrics import compute_metrics
    from vcal_cli.metrics.paired import noise_floors, paired_deltas

    train, val, base = _miscalibrated(n=400)
    stats = Statistics(n_bootstrap=50)
    sel = select_head(
        train, val, candidates=("temperature", "vector"), base=base, auto=AutoOptions(select="ece"), stats=stats
    )
    assert sel.select == "ece" and sel.runner_up is not None
    # the candidates' val predictions, as the selection scored them: cross-fitted on val's 5 folds
    from vcal_cli.heads.select import _val_log_probs

    sides = [
        _val_log_probs(sel.heads[n], type(sel.heads[n]), train, val, base, None, 0)
        for n in (sel.runner_up, sel.picked.name)
    ]
    floors = tuple(
        noise_floors(compute_metrics(val.labels, logits=lp, n_bootstrap=50, seed=0, with_details=False).debiased)
        for lp in sides
    )
    assert all(f["ece"] > 0 for f in floors)
    lo, hi = paired_deltas(*sides, val.labels, n_bins=15, n_bootstrap=50, seed=0, floors=floors)["ece"]
    plain = paired_deltas(*sides, val.labels, n_bins=15, n_bootstrap=50, seed=0)["ece"]
    assert sel.interval == pytest.approx((lo, hi), abs=1e-12)
    assert hi - lo > plain[1] - plain[0]  # wider than the plain paired interval by the floors


def test_cli_head_auto_picks_and_says_why(runner, tmp_path: Path) -> None:
    from vcal_cli.cli import app

    from .conftest import SAMPLES

    r = runner.invoke(
        app,
        [
            "retrain",
            str(SAMPLES / "cnn_digits.safetensors"),
            "--head",
            "auto",
            "--epochs",
            "3",
            "--bootstrap",
            "20",
            "--out",
            "auto",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(Path("auto/report.json").read_text())
    auto = rep["settings"]["retrain"]["auto"]
    assert auto["picked"] in rep["heads"] and len(auto["candidates"]) >= 9
    assert "temperature+temperature" not in auto["candidates"]  # temperature fits val: no second T on top
    assert "picked " + auto["picked"] in r.stderr
    for name, h in rep["heads"].items():
        if name != "original":
            assert set(h["verdicts"]) == {"original", "temperature"}
            assert h["verdicts"]["original"]["nll"]["verdict"] in ("better", "no different", "worse")


def test_verdict_deltas_are_the_metric_differences() -> None:
    """The verdict's change comes from the paired pass itself; it equals the two metrics computed apart."""
    from vcal_cli.metrics import compute_metrics
    from vcal_cli.metrics.paired import verdicts

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (500,), generator=g)
    a = torch.randn(500, 5, generator=g)
    v = verdicts(a, a * 2, y, n_bins=15, n_bootstrap=50, seed=0)
    ma = compute_metrics(y, logits=a, n_bootstrap=0).metrics.as_dict()
    mb = compute_metrics(y, logits=a * 2, n_bootstrap=0).metrics.as_dict()
    for k, row in v.items():
        assert row["delta"] == pytest.approx(mb[k] - ma[k], abs=1e-12), k
        assert row["verdict"] in ("better", "no different", "worse")


def test_penalty_path_starts_strong_and_stops_once_weaker_ones_gain_nothing() -> None:
    """The CV walks 1e6, 1e5, ... and stops after two weaker penalties in a row score no better than the best; the
    weak end (the expensive fits of a many-class map) is reached only when it helps."""
    from vcal_cli.heads.vector import MAX_PENALTY, PATIENCE

    train, val, base = _miscalibrated(n=400, k=6, seed=1)
    head = get_head("vector")().fit(train, val, base=base)
    path = list(head.cv_)
    assert path[0] == MAX_PENALTY and path == sorted(path, reverse=True)
    assert all(a / b == pytest.approx(10) for a, b in zip(path, path[1:], strict=False))
    best = path.index(head.lambda_)
    assert head.cv_[head.lambda_] == min(head.cv_.values())
    assert len(path) - 1 - best == PATIENCE or path[-1] == pytest.approx(1e-4)  # stopped by patience, or walked all


def test_auto_budget_skips_candidates_whose_turn_comes_too_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that jumps 60 s per reading: the budget of 100 s is spent after the first candidate, and each later
    one is skipped with its reason, never silently."""
    import vcal_cli.heads.select as select

    clock = iter(range(0, 10**6, 60))
    monkeypatch.setattr(select.time, "monotonic", lambda: float(next(clock)))
    train, val, base = _miscalibrated(n=300)
    sel = select_head(
        train,
        val,
        candidates=("temperature", "vector", "ce"),
        base=base,
        stats=Statistics(n_bootstrap=20),
        auto=AutoOptions(budget=100),
    )
    monkeypatch.undo()
    assert sel.picked.name == "temperature" and set(sel.scores) == {"temperature"}
    assert set(sel.limited) == {"vector", "ce"} and all("skipped" in why for why in sel.limited.values())
    assert all(w.startswith("--auto-budget 100 s: ") for w in sel.warnings()) and len(sel.warnings()) == 2
    assert sel.to_dict()["budget"]["limited"] == sel.limited


def test_auto_budget_stops_a_trained_candidate_at_its_share() -> None:
    """`ce` asked for 100,000 epochs under a 1 s budget stops at its share, keeps its best (part) epoch, and says so."""
    train, val, base = _miscalibrated(n=600)
    cls = get_head("ce")
    params = {"ce": cls.make_params(epochs=100_000, seed=0)}
    sel = select_head(
        train,
        val,
        candidates=("temperature", "ce"),
        params=params,
        base=base,
        stats=Statistics(n_bootstrap=20),
        auto=AutoOptions(budget=1.0),
    )
    assert "ce" in sel.limited and "stopped at its" in sel.limited["ce"] and "of 100000 epochs" in sel.limited["ce"]
    log = sel.heads["ce"].fit_log_
    assert log.epochs_run < 100_000 and log.stopped and 1 <= log.best_epoch <= log.epochs_run
    assert sel.spent < 30 and torch.isfinite(sel.heads["ce"].predict_log_proba(val.features)).all()


def test_bayes_stops_at_a_deadline() -> None:
    """A passed deadline stops the MAP's L-BFGS after its first chunk of iterations (said in the report); without
    one the chunked path is not taken and nothing is said."""
    import time

    train, val, base = _miscalibrated(n=800)
    cls = get_head("bayes")
    from vcal_cli.heads.base import DeadlinePassed

    with pytest.raises(DeadlinePassed, match="first pass over train"):  # nothing to keep yet: auto skips it
        cls(cls.Params()).fit(train, val, base=base, deadline=time.monotonic() - 1)
    # a deadline that passes during the L-BFGS (a clock read at 0 in the first pass, at 1,000 after it): stopped
    # after the chunk of 2 iterations that passed it
    import vcal_cli.heads.bayes as bayes_module

    clock = iter([0.0] + [1000.0] * 1000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bayes_module.time, "monotonic", lambda: next(clock))
        cut = cls(cls.Params(max_iter=200, tol=1e-12)).fit(train, val, base=base, deadline=500.0)
    assert cut.extra_report()["stopped"] == "after 2 of at most 200 L-BFGS iterations" and cut.iterations_ == 2
    assert torch.isfinite(cut.predict_log_proba(val.features)).all()
    late = cls(cls.Params(max_iter=200, tol=1e-12)).fit(train, val, base=base, deadline=time.monotonic() + 600)
    full = cls(cls.Params(max_iter=200, tol=1e-12)).fit(train, val, base=base)
    assert "stopped" not in late.extra_report() and "stopped" not in full.extra_report()
    # the chunked run continues one L-BFGS history: it ends where the one-call run ends
    assert (late.predict_log_proba(val.features) - full.predict_log_proba(val.features)).abs().max() < 1e-3


def test_logit_map_stops_its_penalty_path_at_a_deadline() -> None:
    """Past its deadline a logit map keeps the best penalty of the path so far and says so."""
    import time

    train, val, base = _miscalibrated(n=400, k=6, seed=1)
    head = get_head("vector")().fit(train, val, base=base, deadline=time.monotonic() - 1)
    assert list(head.cv_) == [1e6] and head.lambda_ == 1e6
    assert head.extra_report()["stopped"] == "after 1 of 11 penalties on the path"
    assert "stopped" not in get_head("vector")().fit(train, val, base=base).extra_report()


def test_auto_skips_a_candidate_that_cannot_be_fitted_and_says_why() -> None:
    """Found at 1.28M rows: `ce` stopped by the budget before it learned gave val logits no temperature fits, and the
    error ended the whole selection. A candidate (or its +temperature) that raises a HeadError is skipped instead."""
    train, val, base = _miscalibrated(n=300)
    constant = FitData(torch.zeros_like(train.features), train.logits, train.labels)  # nothing to learn from
    sel = select_head(
        constant,
        val,
        candidates=("temperature", "ce"),
        base=base,
        params={"ce": get_head("ce").make_params(epochs=1, hidden=0, seed=0)},
        stats=Statistics(n_bootstrap=20),
    )
    assert sel.picked.name in sel.scores
    assert "ce+temperature" in sel.limited and "temperature scaling" in sel.limited["ce+temperature"]
    assert sel.warnings() and all(w.startswith("--head auto: ") for w in sel.warnings())  # no budget given
    assert all(why.startswith("skipped, could not be fitted: ") for why in sel.limited.values())
    # under a budget the reason is still the candidate's own, not the budget's
    sel = select_head(
        constant,
        val,
        candidates=("temperature", "ce"),
        base=base,
        params={"ce": get_head("ce").make_params(epochs=1, hidden=0, seed=0)},
        stats=Statistics(n_bootstrap=20),
        auto=AutoOptions(budget=1e6),
    )
    assert any(w.startswith("--head auto: ce+temperature skipped, could not be fitted") for w in sel.warnings())

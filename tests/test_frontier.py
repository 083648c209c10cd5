"""`vcal frontier`: R, D, C on the sample's cached features, the selection rule, and the written head."""

from __future__ import annotations

import json

import pytest
import torch

from vcal_cli import AuditSettings, ExtractOptions, RetrainSettings, audit
from vcal_cli.api import retrain
from vcal_cli.cli import app
from vcal_cli.commands.frontier import FrontierPoint, frontier, select_point
from vcal_cli.commands.settings import FrontierSettings, parse_grid
from vcal_cli.errors import UsageError

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = SAMPLES / "cnn_digits.safetensors"
EPOCHS = 100


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("frontier")
    opts = ExtractOptions.of(cache_dir=str(root / "cache"))
    res = frontier(
        CNN,
        data="digits",
        options=opts,
        settings=FrontierSettings(betas=(1e-4, 1e-2, 1.0, 10.0), epochs=EPOCHS, write_best=root / "best.safetensors"),
    )
    return res, opts, root


def test_rate_is_non_negative_and_falls_as_beta_rises(sweep) -> None:
    res, _, _ = sweep
    rates = [p.rate for p in res.points]
    assert all(r >= 0 for r in rates)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False)), rates
    # squeezing the rate costs classification loss and distortion
    assert res.points[-1].classification > res.points[0].classification
    assert res.points[-1].distortion > res.points[0].distortion


def test_near_zero_beta_matches_ce_accuracy(sweep, tmp_path) -> None:
    res, opts, _ = sweep
    ce = retrain(
        CNN,
        ["ce"],
        data="digits",
        options=opts,
        settings=RetrainSettings(params={"epochs": EPOCHS}, out_dir=tmp_path, n_bootstrap=0),
    )
    assert abs(res.points[0].test_accuracy - ce.heads["ce"].result.metrics.accuracy) <= 0.01


def test_selected_point_satisfies_the_tolerance_and_audit_reproduces_it(sweep) -> None:
    res, opts, root = sweep
    best_val = max(p.val_accuracy for p in res.points)
    sel = res.points[res.selected]
    assert sel.val_accuracy >= best_val - res.settings["tolerance"]
    ok = [p for p in res.points if p.val_accuracy >= best_val - res.settings["tolerance"]]
    assert sel.val_ece == min(p.val_ece for p in ok)
    rep = audit(root / "best.safetensors", data="digits", options=opts, settings=AuditSettings(n_bootstrap=0))
    assert rep.metrics["accuracy"] == sel.test_accuracy
    assert rep.metrics["ece"] == pytest.approx(sel.test_ece, abs=1e-12)
    assert rep.checkpoint["head"] == "vtst"


def test_selection_rule_by_hand() -> None:
    def pt(acc: float, ece: float, rate: float, nll: float) -> FrontierPoint:
        return FrontierPoint(
            beta=0.1,
            lam=0.0,
            rate=rate,
            distortion=0,
            mse=0,
            classification=0,
            val_accuracy=acc,
            val_ece=ece,
            val_nll=nll,
            test_accuracy=acc,
            test_ece=ece,
            test_nll=nll,
        )

    pts = [pt(0.950, 0.01, 5, 0.3), pt(0.960, 0.05, 9, 0.2), pt(0.957, 0.02, 7, 0.25), pt(0.940, 0.001, 1, 0.9)]
    assert select_point(pts, 0.005, "ece")[0] == 2  # 0.950 and 0.940 are out; 0.957 beats 0.960 on ECE
    assert select_point(pts, 0.005, "nll")[0] == 1
    assert select_point(pts, 0.02, "rate")[0] == 3
    assert select_point(pts, 0.0, "ece")[0] == 1
    with pytest.raises(UsageError, match="--select"):
        select_point(pts, 0.005, "accuracy")
    assert parse_grid("0,1e-3", "--betas") == (0.0, 1e-3)
    with pytest.raises(UsageError, match="--betas"):
        parse_grid("a,b", "--betas")


def test_cli_writes_csv_plots_and_json(runner, tmp_path) -> None:
    args = ["frontier", str(CNN), "--betas", "0.001,1", "--lambdas", "0,0.01", "--epochs", "20", "-o", "fr"]
    r = runner.invoke(app, [*args, "--json", "--write-best", "best.safetensors"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert len(d["points"]) == 4 and sum(p["selected"] for p in d["points"]) == 1
    assert {"beta", "lam", "rate", "distortion", "classification", "test_accuracy", "test_nll", "test_ece"} <= set(
        d["points"][0]
    )
    assert "lowest val ece" in d["selected"]["reason"] and d["written"] == "best.safetensors"
    csv = (tmp_path / "fr" / "frontier.csv").read_text().splitlines()
    assert len(csv) == 5 and csv[0].startswith("beta,lam,rate")
    assert (tmp_path / "fr" / "frontier.png").stat().st_size > 0
    assert "--head" in one_line_error(runner.invoke(app, ["frontier", str(CNN), "--head", "bayes"]))
    assert "--tolerance" in one_line_error(runner.invoke(app, ["frontier", str(CNN), "--tolerance", "200"]))
    line = one_line_error(runner.invoke(app, ["frontier", str(CNN), "--write-best", str(CNN), "--epochs", "1"]))
    assert "refusing" in line
    line = one_line_error(runner.invoke(app, ["frontier", str(CNN), "--train-device", "cuda:x", "--cache-dir", "c2"]))
    assert "--train-device" in line and not (tmp_path / "c2").exists()  # refused before any extraction
    assert d["settings"]["train_device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # where it ran


@pytest.fixture(scope="module")
def digits_fit(tmp_path_factory: pytest.TempPathFactory):
    from vcal_cli.heads import FitData
    from vcal_cli.session.workbench import load_features

    o = ExtractOptions.of(cache_dir=str(tmp_path_factory.mktemp("fw")))
    loaded, tr, _ = load_features(str(CNN), "digits", "train", o)
    _, va, _ = load_features(loaded, "digits", "val", o)
    return tuple(FitData(f.features.float().clone(), f.logits, f.labels) for f in (tr, va))


def test_warm_walk_starts_where_the_cold_one_does_and_moves_on(digits_fit) -> None:
    from vcal_cli.evaluations.frontier import Settings, Surface, walk

    s = Settings(hidden=16, samples=4, epochs=30, warm_epochs=10, lr=1e-3, batch_size=256, seed=0)
    surface = Surface.of(*digits_fit, s)
    cold = walk(surface, (1e-3, 1e-1), (0.0,), warm=False)
    warm = walk(surface, (1e-1, 1e-3), (0.0,), warm=True)  # sorted: the same order
    assert [(b, lam) for b, lam, _ in warm] == [(1e-3, 0.0), (1e-1, 0.0)]
    first_c, first_w = cold[0][2].state_dict(), warm[0][2].state_dict()
    assert all(torch.equal(first_c[k], first_w[k]) for k in first_c)  # the first point is a cold fit
    second_c, second_w = cold[1][2].state_dict(), warm[1][2].state_dict()
    assert not all(torch.equal(second_c[k], second_w[k]) for k in second_c)  # the second started elsewhere


def test_warm_walk_lands_within_noise_of_independent_fits(digits_fit) -> None:
    """The quasi-static walk (each point from its neighbour, at most a quarter of the schedule at 10x the rate) against
    independent fits of every point: its val free energy may be lower (a better optimum), but not higher by more
    than the noise, the larger of twice the seed-to-seed spread of independent fits and 0.02 nats (at beta = 10
    both seeds collapse to the prior, spread 0.0003, while a fit's own val F wanders by +-0.01 from epoch to
    epoch). Measured here: walk - independent = +0.000, -0.006, -0.049, +0.008 nats."""
    from vcal_cli.evaluations.frontier import Settings, Surface, walk, warm_epochs_for

    betas = (1e-3, 1e-1, 1.0, 10.0)

    def free_energies(seed: int, warm: bool) -> list[float]:
        s = Settings(
            hidden=16, samples=4, epochs=200, warm_epochs=warm_epochs_for(200), lr=1e-3, batch_size=256, seed=seed
        )
        out = []
        surface = Surface.of(*digits_fit, s)
        for b, lam, m in walk(surface, betas, (0.0,), warm=warm):
            r = surface.measure(m)
            out.append(r["classification"] + b * r["rate"] + lam * r["distortion"])
        return out

    cold, other_seed, warm = free_energies(0, False), free_energies(1, False), free_energies(0, True)
    for b, c, c1, w in zip(betas, cold, other_seed, warm, strict=True):
        noise = max(2 * abs(c - c1), 0.02)
        assert w <= c + noise, f"beta={b}: walk F {w:.4f} vs independent {c:.4f} (seed 1: {c1:.4f})"


def test_iso_classification_finds_lambdas_of_equal_val_c(digits_fit) -> None:
    from vcal_cli.evaluations.frontier import Settings, Surface, iso_classification

    s = Settings(hidden=16, samples=4, epochs=40, warm_epochs=10, lr=1e-3, batch_size=256, seed=0)
    surface = Surface.of(*digits_fit, s)
    out = iso_classification(surface, (1e-2, 1e-1), 0.3, steps=4)
    assert [b for b, *_ in out] == [1e-2, 1e-1]
    cs = [surface.measure(m)["classification"] for _, _, m, _ in out]
    assert all(1e-4 <= lam <= 10 for _, lam, _, _ in out)
    # beta 0.01: every lambda keeps C below 0.3 (not reached, the closest returned); beta 0.1 brackets it
    assert [r for *_, r in out] == [False, True]
    # 0.02: the tolerance 4 bisection steps on log-lambda reach here (a regression value of this sample and seed,
    # from vcal's own run: 0.3 is the target, not a measured number)
    assert cs[0] < 0.3 and abs(cs[1] - 0.3) < 0.02, cs
    with pytest.raises(UsageError, match="--iso-c"):
        frontier(CNN, data="digits", settings=FrontierSettings(iso_c=-1.0))
    with pytest.raises(UsageError, match="--warm-lr"):
        frontier(CNN, data="digits", settings=FrontierSettings(warm_lr=0.0))
    with pytest.raises(UsageError, match="--warm-epochs"):
        frontier(CNN, data="digits", settings=FrontierSettings(warm_epochs=0))

"""`vcal frontier`: R, D, C on the sample's cached features, the selection rule, and the written head."""

from __future__ import annotations

import json

import pytest

from vcal_cli import ExtractOptions, audit
from vcal_cli.api import retrain
from vcal_cli.cli import app
from vcal_cli.errors import UsageError
from vcal_cli.frontier import FrontierPoint, frontier, parse_grid, select_point

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = SAMPLES / "cnn_digits.safetensors"
EPOCHS = 100


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("frontier")
    opts = ExtractOptions(cache_dir=str(root / "cache"))
    res = frontier(
        CNN,
        data="digits",
        betas=(1e-4, 1e-2, 1.0, 10.0),
        epochs=EPOCHS,
        options=opts,
        write_best=root / "best.safetensors",
    )
    return res, opts, root


def test_rate_is_non_negative_and_falls_as_beta_rises(sweep) -> None:  # noqa: ANN001
    res, _, _ = sweep
    rates = [p.rate for p in res.points]
    assert all(r >= 0 for r in rates)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False)), rates
    # squeezing the rate costs classification loss and distortion
    assert res.points[-1].classification > res.points[0].classification
    assert res.points[-1].distortion > res.points[0].distortion


def test_near_zero_beta_matches_ce_accuracy(sweep, tmp_path) -> None:  # noqa: ANN001
    res, opts, _ = sweep
    ce = retrain(CNN, ["ce"], data="digits", options=opts, params={"epochs": EPOCHS}, out_dir=tmp_path, n_bootstrap=0)
    assert abs(res.points[0].test_accuracy - ce.heads["ce"].result.metrics.accuracy) <= 0.01


def test_selected_point_satisfies_the_tolerance_and_audit_reproduces_it(sweep) -> None:  # noqa: ANN001
    res, opts, root = sweep
    best_val = max(p.val_accuracy for p in res.points)
    sel = res.points[res.selected]
    assert sel.val_accuracy >= best_val - res.settings["tolerance"]
    ok = [p for p in res.points if p.val_accuracy >= best_val - res.settings["tolerance"]]
    assert sel.val_ece == min(p.val_ece for p in ok)
    rep = audit(root / "best.safetensors", data="digits", options=opts, n_bootstrap=0)
    assert rep.metrics["accuracy"] == sel.test_accuracy
    assert rep.metrics["ece"] == pytest.approx(sel.test_ece, abs=1e-12)
    assert rep.checkpoint["head"] == "vtst"


def test_selection_rule_by_hand() -> None:
    def pt(acc: float, ece: float, rate: float, nll: float) -> FrontierPoint:
        return FrontierPoint(0.1, 0.0, rate, 0, 0, 0, acc, ece, nll, acc, ece, nll)

    pts = [pt(0.950, 0.01, 5, 0.3), pt(0.960, 0.05, 9, 0.2), pt(0.957, 0.02, 7, 0.25), pt(0.940, 0.001, 1, 0.9)]
    assert select_point(pts, 0.005, "ece")[0] == 2  # 0.950 and 0.940 are out; 0.957 beats 0.960 on ECE
    assert select_point(pts, 0.005, "nll")[0] == 1
    assert select_point(pts, 0.02, "rate")[0] == 3
    assert select_point(pts, 0.0, "ece")[0] == 1
    with pytest.raises(UsageError, match="--select"):
        select_point(pts, 0.005, "accuracy")
    assert parse_grid("0,1e-3", "--betas", ()) == (0.0, 1e-3)
    with pytest.raises(UsageError, match="--betas"):
        parse_grid("a,b", "--betas", ())


def test_cli_writes_csv_plots_and_json(runner, tmp_path) -> None:  # noqa: ANN001
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

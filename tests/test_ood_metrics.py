"""OOD metrics against scikit-learn on the same scores (ties included), and the scores themselves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from vcal_cli.detectors import DETECTORS, ORDER, Scored, Train
from vcal_cli.metrics.compute import resample_counts
from vcal_cli.metrics.ood import aupr, aupr_in, auroc, fpr_at_95_tpr, resampled_metrics


def _score(name: str, logits: torch.Tensor) -> torch.Tensor:
    return DETECTORS.get(name)().score(Scored(features=torch.zeros(len(logits), 1), outputs=logits, raw_logits=True))


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    return _score("msp", logits)


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    return _score("energy", logits)


def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    return _score("entropy", logits)


def _reference_sklearn(id_s: torch.Tensor, ood_s: torch.Tensor) -> tuple[float, float, float]:
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    s = np.r_[id_s.numpy(), ood_s.numpy()]
    fpr, tpr, _ = roc_curve(y, s)
    return roc_auc_score(y, s), average_precision_score(y, s), float(fpr[np.argmax(tpr >= 0.95)])


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True)])
def test_ood_metrics_match_sklearn(seed: int, ties: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    id_s, ood_s = (
        torch.randn(700, generator=g, dtype=torch.float64),
        torch.randn(300, generator=g, dtype=torch.float64) + 1,
    )
    if ties:
        id_s, ood_s = id_s.round(decimals=1), ood_s.round(decimals=1)
    ref = _reference_sklearn(id_s, ood_s)
    ours = (auroc(id_s, ood_s), aupr(id_s, ood_s), fpr_at_95_tpr(id_s, ood_s))
    for a, b in zip(ours, ref, strict=True):
        assert math.isclose(a, b, abs_tol=1e-12), (ours, ref)


def test_scores_hand_worked() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(msp_score(logits), -torch.tensor([math.exp(2) / (math.exp(2) + 1), 0.5], dtype=torch.float64))
    assert torch.allclose(
        energy_score(logits), -torch.tensor([math.log(math.exp(2) + 1), math.log(2)], dtype=torch.float64)
    )
    f = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    maha = DETECTORS.get("mahalanobis")()
    maha.fit(Train(features=f, logits=torch.zeros(4, 2), labels=torch.tensor([0, 0, 1, 1]), num_classes=2))
    assert torch.allclose(maha.means, torch.tensor([[1.0, 0.0], [1.0, 2.0]], dtype=torch.float64))
    # tied covariance diag(1, 0): only the first coordinate counts (pinv); (1, 0) sits on class 0's mean
    test = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert torch.allclose(
        maha.score(Scored(features=test, outputs=torch.zeros(2, 2), raw_logits=True)),
        torch.tensor([0.0, 4.0], dtype=torch.float64),
    )


def test_entropy_matches_scipy() -> None:
    from scipy.stats import entropy

    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)) * 3
    ref = entropy(torch.softmax(logits.double(), 1).numpy(), axis=1)
    assert np.allclose(entropy_score(logits).numpy(), ref, atol=1e-12)
    # log-probabilities give the same entropy as the logits they came from
    assert torch.allclose(entropy_score(torch.log_softmax(logits, 1)), entropy_score(logits), atol=1e-5)


def test_audit_ood_section_matches_sklearn(runner, tmp_path) -> None:
    from sklearn.metrics import roc_auc_score

    from vcal_cli import load_features
    from vcal_cli.cli import app

    from .conftest import SAMPLES
    from .helpers import one_line_error

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (200, 1, 8, 8), dtype=np.uint8), y=np.zeros(200, int))
    ck = SAMPLES / "cnn_digits.safetensors"
    r = runner.invoke(app, ["audit", str(ck), "--ood", "npz:noise.npz", "--json", "--bootstrap", "0", "-o", "rep"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["ood"]
    assert {x["score"] for x in rows} == set(ORDER) - {"mutual_info", "disagreement"}
    # no bootstrap asked: the metrics and the AUROC rank alone
    assert all(set(x) == {"dataset", "score", "auroc", "aupr", "aupr_in", "fpr95", "rank"} for x in rows)
    assert (tmp_path / "rep" / "ood_0.png").stat().st_size > 0
    _, id_fs, _ = load_features(ck, "digits", "test")
    _, ood_fs, _ = load_features(ck, "npz:noise.npz", "test", check_classes=False)
    s_id, s_ood = msp_score(id_fs.logits), msp_score(ood_fs.logits)
    ref = roc_auc_score(np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))], np.r_[s_id.numpy(), s_ood.numpy()])
    msp = next(x for x in rows if x["score"] == "msp")
    assert math.isclose(msp["auroc"], ref, abs_tol=1e-12)
    assert "need a CHECKPOINT" in one_line_error(
        runner.invoke(app, ["audit", "--logits", "l.npz", "--ood", "npz:noise.npz"])
    )


def test_resampled_metrics_equal_the_materialised_resamples_and_sklearn() -> None:
    """Row 0 (every count one) is the sample's metrics, scikit-learn's too; row r is the metrics of resample r with
    each sample repeated as often as drawn (ties included: the scores are rounded)."""
    g = torch.Generator().manual_seed(3)
    id_s = (torch.randn(300, generator=g) * 4).round().double()
    ood_s = (torch.randn(200, generator=g) * 4 + 2).round().double()
    id_c, ood_c = resample_counts(300, 5, 1), resample_counts(200, 5, 2)
    got = resampled_metrics(id_s, ood_s, id_c, ood_c)
    want_auroc, want_aupr, want_fpr = _reference_sklearn(id_s, ood_s)
    y = np.r_[np.ones(300), np.zeros(200)]
    assert float(got["auroc"][0]) == pytest.approx(want_auroc, abs=1e-12)
    assert float(got["aupr"][0]) == pytest.approx(want_aupr, abs=1e-12)
    assert float(got["fpr95"][0]) == pytest.approx(want_fpr, abs=1e-12)
    assert float(got["aupr_in"][0]) == pytest.approx(average_precision_score(y, -np.r_[id_s, ood_s]), abs=1e-12)
    assert float(got["aupr_in"][0]) == pytest.approx(aupr_in(id_s, ood_s), abs=1e-12)
    for r in range(1, 6):
        a = torch.repeat_interleave(id_s, id_c[r].long())
        b = torch.repeat_interleave(ood_s, ood_c[r].long())
        assert float(got["auroc"][r]) == pytest.approx(auroc(a, b), abs=1e-12)
        assert float(got["aupr"][r]) == pytest.approx(aupr(a, b), abs=1e-12)
        assert float(got["aupr_in"][r]) == pytest.approx(aupr_in(a, b), abs=1e-12)
        assert float(got["fpr95"][r]) == pytest.approx(fpr_at_95_tpr(a, b), abs=1e-12)


def test_ood_rows_hold_intervals_and_paired_verdicts(runner, tmp_path: Path) -> None:
    """With the bootstrap: every metric's interval holds its point; every detector but MSP has a paired verdict
    against MSP, whose interval holds the difference of the two points; the AUROC leader has one against the
    runner-up."""
    from vcal_cli.cli import app

    from .conftest import SAMPLES

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (120, 1, 8, 8), dtype=np.uint8), y=np.zeros(120, int))
    ck = SAMPLES / "cnn_digits.safetensors"
    args = ["audit", str(ck), "--ood", "npz:noise.npz", "--ood-detectors", "msp,energy,knn,vim", "--bootstrap", "50"]
    r = runner.invoke(app, [*args, "--json", "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    rows = {x["score"]: x for x in rep["ood"]}
    assert list(rows) == ["msp", "energy", "knn", "vim"]
    for name, x in rows.items():
        for m in ("auroc", "aupr", "aupr_in", "fpr95"):
            lo, hi = x["intervals"][m]
            assert lo - 1e-9 <= x[m] <= hi + 1e-9 or m == "fpr95", (name, m)
        if name != "msp":
            d = x["vs_msp"]["auroc"]
            assert d["delta"] == pytest.approx(x["auroc"] - rows["msp"]["auroc"], abs=1e-12)
            assert d["verdict"] in ("better", "worse", "no different")
    leader = next(x for x in rows.values() if x["rank"] == 1)
    assert leader["vs_runner_up"]["runner_up"] == next(x["score"] for x in rows.values() if x["rank"] == 2)
    assert set(rep["settings"]["ood"]["detectors"]) == set(rows)
    assert rep["settings"]["ood"]["detectors"]["knn"]["k"] == 50


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--ood-detectors", "nope"], "--ood-detectors: unknown detector 'nope'"),
        (["--knn-share", "0"], "--knn-share 0.0 must be above 0"),
        (["--knn-k", "100000"], "--knn-k 100000 is not between 1 and the"),
    ],
)
def test_bad_detector_flags_are_one_line(runner, tmp_path: Path, flags: list[str], says: str) -> None:
    from vcal_cli.cli import app

    from .conftest import SAMPLES
    from .helpers import one_line_error

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (50, 1, 8, 8), dtype=np.uint8), y=np.zeros(50, int))
    args = ["audit", str(SAMPLES / "cnn_digits.safetensors"), "--ood", f"npz:{tmp_path / 'noise.npz'}", *flags]
    assert says in one_line_error(runner.invoke(app, [*args, "-o", str(tmp_path / "rep")]))
    assert not (tmp_path / "rep").exists()

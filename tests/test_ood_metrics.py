"""OOD metrics against scikit-learn on the same scores (ties included), and the scores themselves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from vcal_cli.metrics.ood import (
    aupr,
    auroc,
    energy_score,
    entropy_score,
    fpr_at_95_tpr,
    mahalanobis_fit,
    mahalanobis_score,
    msp_score,
)


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
    means, prec = mahalanobis_fit(f, torch.tensor([0, 0, 1, 1]), 2)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [1.0, 2.0]], dtype=torch.float64))
    # tied covariance diag(1, 0): only the first coordinate counts (pinv); (1, 0) sits on class 0's mean
    assert torch.allclose(
        mahalanobis_score(torch.tensor([[1.0, 0.0], [3.0, 0.0]]), means, prec),
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
    assert {x["score"] for x in rows} == {"msp", "entropy", "max_logit", "energy", "mahalanobis"}
    assert all(set(x) == {"dataset", "score", "auroc", "aupr", "fpr95"} for x in rows)
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

"""The report's details against independent references: smooth ECE against relplot (the authors' package),
selective accuracy and the risk-coverage curve by hand, per-class rows and the confusion matrix against
scikit-learn, and the confidence gap against its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.details import risk_coverage, selective_accuracy
from vcal_cli.metrics.smooth import smooth_curve, smooth_ece, smooth_ece_at

relplot = pytest.importorskip("relplot")


def _case(n: int, skew: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.2, 1.0, n)
    y = (rng.uniform(0, 1, n) < np.clip(f + skew, 0, 1)).astype(float)
    return f, y


@pytest.mark.parametrize(("n", "skew", "seed"), [(3, 0.0, 0), (50, 0.1, 1), (540, -0.05, 2), (20_000, 0.02, 3)])
def test_smooth_ece_equals_relplot(n: int, skew: float, seed: int) -> None:
    f, y = _case(n, skew, seed)
    assert smooth_ece(torch.tensor(f), torch.tensor(y)) == pytest.approx(relplot.smECE(f, y), abs=1e-6)
    for sigma in (0.01, 0.05, 0.3):  # fixed bandwidths too
        ours = smooth_ece_at(torch.tensor(f), torch.tensor(y), sigma)
        assert ours == pytest.approx(relplot.smECE_sigma(f, y, sigma), abs=1e-6)


def test_smooth_curve_is_near_the_diagonal_when_calibrated_and_below_when_overconfident() -> None:
    f, y = _case(20_000, 0.0, 4)
    c = smooth_curve(torch.tensor(f), torch.tensor(y))
    mid = [a - t for t, a in zip(c.confidence, c.accuracy, strict=True) if 0.3 < t < 0.9]
    assert max(abs(d) for d in mid) < 0.05
    f2, y2 = _case(20_000, -0.2, 5)  # outcomes 0.2 below the confidence: over-confident
    c2 = smooth_curve(torch.tensor(f2), torch.tensor(y2))
    assert np.mean([a - t for t, a in zip(c2.confidence, c2.accuracy, strict=True) if 0.5 < t < 0.9]) < -0.1


def test_selective_accuracy_and_risk_coverage_by_hand() -> None:
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    correct = torch.tensor([1, 1, 0, 1, 0, 1, 0, 1, 0, 0], dtype=torch.float64)
    # most confident first: 0.95 (1), 0.9 (1), 0.8 (1), 0.7 (0), 0.6 (1), 0.5 (0), 0.4 (0), 0.3 (1), 0.2, 0.1
    assert selective_accuracy(conf, correct, 0.3) == 1.0  # the top 3
    assert selective_accuracy(conf, correct, 0.5) == 0.8  # 4 of the top 5
    assert selective_accuracy(conf, correct, 0.99) == 0.5  # ceil(9.9) = 10: all
    curve = risk_coverage(conf, correct, points=10)
    assert curve[0] == (0.1, 0.0) and curve[3] == (0.4, 0.25) and curve[-1] == (1.0, 0.5)


def test_per_class_rows_and_confusion_match_scikit_learn() -> None:
    from sklearn.metrics import confusion_matrix, recall_score

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 5, generator=g) * 2
    labels = torch.randint(0, 5, (400,), generator=g)
    d = compute_metrics(labels, logits=logits, n_bootstrap=50).details
    assert d is not None
    pred = logits.argmax(1)
    assert d.confusion == confusion_matrix(labels, pred, labels=range(5)).tolist()
    rows = {r.index: r for r in d.per_class}
    recall = recall_score(labels, pred, average=None, labels=range(5))
    conf = torch.softmax(logits.double(), 1).max(1).values
    for c in range(5):
        assert rows[c].count == int((labels == c).sum())
        assert rows[c].accuracy == pytest.approx(recall[c], abs=1e-12)
        assert rows[c].confidence == pytest.approx(float(conf[labels == c].mean()), abs=1e-12)
    eces = [r.ece for r in d.per_class]
    assert eces == sorted(eces, reverse=True)  # worst first
    m = compute_metrics(labels, logits=logits, n_bootstrap=0).metrics
    assert sum(eces) / 5 == pytest.approx(m.classwise_ece, abs=1e-12)  # the classes' share of classwise ECE
    acc = float((pred == labels).double().mean())
    assert d.gap == pytest.approx(float(conf.mean()) - acc, abs=1e-12)
    assert d.gap_interval is not None and d.gap_interval[0] <= d.gap <= d.gap_interval[1]

"""Every metric against an independent reference on the same inputs, and hand-worked cases.

References: torchmetrics 1.x (ECE, MCE, binary ECE per class), netcal (ECE, MCE), scikit-learn
(accuracy, log loss, Brier). Tolerances are stated in each call. Reference ECEs need inputs with no
confidence exactly 1.0 (torchmetrics opens an extra bin for it) and at least 3 distinct labels (netcal
switches to binary mode otherwise), so the random cases below are drawn that way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchmetrics.functional.classification as tmf
from sklearn.metrics import accuracy_score, log_loss

from vcal_cli.errors import MetricError
from vcal_cli.metrics import (
    aurc,
    brier,
    classwise_ece,
    compute_metrics,
    ece,
    ece_adaptive,
    mce,
    nll,
)

ATOL = 1e-6


def _case(seed: int, n: int = 2000, k: int = 10, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    probs = logits.softmax(1)
    # labels correlated with the prediction, so accuracy is neither 0 nor 1
    take_pred = torch.rand(n, generator=g) < 0.7
    labels = torch.where(take_pred, probs.argmax(1), torch.randint(0, k, (n,), generator=g))
    return logits, labels


CASES = [(s, k) for s in (0, 1) for k in (3, 10)]


def _reference_torchmetrics_ece(probs, labels, n_bins, norm="l1"):
    return float(tmf.multiclass_calibration_error(probs.float(), labels, probs.shape[1], n_bins=n_bins, norm=norm))


def _reference_netcal(metric: str, probs, labels, n_bins):
    from netcal.metrics import ECE, MCE

    cls = {"ece": ECE, "mce": MCE}[metric]
    return float(cls(bins=n_bins).measure(probs.numpy(), labels.numpy()))


@pytest.mark.parametrize("seed,k", CASES)
@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_ece_matches_torchmetrics_and_netcal(seed: int, k: int, n_bins: int) -> None:
    logits, labels = _case(seed, k=k)
    probs = logits.softmax(1)
    assert probs.max() < 1.0
    ours = ece(probs, labels, n_bins=n_bins)
    # torchmetrics computes in float32: 1e-6 absolute is its precision on these inputs
    assert math.isclose(ours, _reference_torchmetrics_ece(probs, labels, n_bins), abs_tol=ATOL)
    assert math.isclose(ours, _reference_netcal("ece", probs, labels, n_bins), abs_tol=ATOL)


@pytest.mark.parametrize("seed,k", CASES)
def test_mce_matches_torchmetrics_and_netcal(seed: int, k: int) -> None:
    logits, labels = _case(seed, k=k)
    probs = logits.softmax(1)
    ours = mce(probs, labels, n_bins=15)
    assert math.isclose(ours, _reference_torchmetrics_ece(probs, labels, 15, norm="max"), abs_tol=ATOL)
    assert math.isclose(ours, _reference_netcal("mce", probs, labels, 15), abs_tol=ATOL)


@pytest.mark.parametrize("seed,k", CASES)
def test_classwise_ece_matches_torchmetrics_binary_per_class(seed: int, k: int) -> None:
    logits, labels = _case(seed, k=k)
    probs = logits.softmax(1)
    ref = np.mean(
        [float(tmf.binary_calibration_error(probs[:, c].float(), (labels == c).long(), n_bins=15)) for c in range(k)]
    )
    assert math.isclose(classwise_ece(probs, labels, n_bins=15), ref, abs_tol=ATOL)


@pytest.mark.parametrize("seed,k", CASES)
def test_accuracy_nll_brier_match_sklearn(seed: int, k: int) -> None:
    logits, labels = _case(seed, k=k)
    probs = logits.softmax(1)
    r = compute_metrics(labels, logits=logits, n_bootstrap=0)
    assert math.isclose(r.metrics.accuracy, accuracy_score(labels, probs.argmax(1)), abs_tol=1e-12)
    assert math.isclose(r.metrics.nll, log_loss(labels, probs.numpy(), labels=list(range(k))), abs_tol=1e-9)
    assert math.isclose(nll(logits, labels), r.metrics.nll, abs_tol=1e-12)
    onehot = np.eye(k)[labels.numpy()]
    # scikit-learn's multiclass brier_score_loss halves by default for K = 2 only; compute its definition directly
    assert math.isclose(r.metrics.brier, float(((probs.numpy() - onehot) ** 2).sum(1).mean()), abs_tol=1e-12)
    from sklearn.metrics import brier_score_loss

    assert math.isclose(
        r.metrics.brier,
        brier_score_loss(labels, probs.numpy(), labels=list(range(k)), scale_by_half=False),
        abs_tol=1e-9,
    )


def test_hand_worked_edge_case_from_peers_note() -> None:
    """peers.md section 2.13: confidence exactly 1.0 goes into the last bin under vcal's rule."""
    probs = torch.tensor([[0.95, 0.03, 0.02], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    # last bin [14/15, 1]: conf {0.95, 1.0}, acc {1, 0} -> |0.5 - 0.975| * 2/3; bin [7/15, 8/15): |1 - 0.5| * 1/3
    expected = abs(0.5 - 0.975) * 2 / 3 + abs(1 - 0.5) / 3
    assert math.isclose(ece(probs, labels, n_bins=15), expected, abs_tol=1e-12)
    assert math.isclose(expected, 0.48333333, abs_tol=1e-8)
    assert math.isclose(mce(probs, labels, n_bins=15), 0.5, abs_tol=1e-12)


def test_bin_edges_are_left_closed() -> None:
    """A confidence exactly on an interior edge (0.6 with 5 bins) belongs to the bin that starts there."""
    probs = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0])
    # bins of width 0.2: [0.6, 0.8) holds both 0.6 rows (acc 0.5, conf 0.6); [0.8, 1.0] holds 0.9 (acc 1)
    expected = (2 / 3) * abs(0.5 - 0.6) + (1 / 3) * abs(1.0 - 0.9)
    assert math.isclose(ece(probs, labels, n_bins=5), expected, abs_tol=1e-12)
    bins = compute_metrics(labels, probs=probs, n_bins=5, n_bootstrap=0).reliability
    assert [b.count for b in bins] == [0, 0, 0, 2, 1]
    assert bins[3].accuracy == 0.5 and math.isclose(bins[3].confidence, 0.6)


def test_adaptive_ece_hand_worked() -> None:
    """6 samples, 3 equal-count bins of 2 after sorting by confidence."""
    conf = torch.tensor([0.9, 0.4, 0.6, 0.8, 0.5, 0.7], dtype=torch.float64)
    probs = torch.stack([conf, 1 - conf], 1)
    labels = torch.tensor([0, 0, 1, 0, 0, 1])  # correct where label 0 and conf >= 0.5 is the top class
    # top-label confidence: max(c, 1-c) -> [0.9, 0.6, 0.6, 0.8, 0.5, 0.7]; pred = 0 except row 1 (0.4 -> class 1)
    # correct: [1, 0 (pred 1, y 0), 0 (pred 0, y 1), 1, 1 (0.5 tie -> class 0), 0]
    # sorted conf: 0.5(1) 0.6(0) 0.6(0) 0.7(0) 0.8(1) 0.9(1) -> bins {0.5,0.6}, {0.6,0.7}, {0.8,0.9}
    expected = (abs(0.5 - 0.55) + abs(0.0 - 0.65) + abs(1.0 - 0.85)) * 2 / 6
    assert math.isclose(ece_adaptive(probs, labels, n_bins=3), expected, abs_tol=1e-12)


def _naive_aurc(conf: np.ndarray, correct: np.ndarray) -> float:
    order = np.argsort(-conf, kind="stable")
    err = 1 - correct[order]
    n = len(conf)
    risks = [err[: k + 1].sum() / (k + 1) for k in range(n)]
    return float(np.trapezoid(risks, dx=1 / n) / (1 - 1 / n))


def test_aurc_hand_worked_and_naive() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1])
    # confidences 0.9 (ok), 0.8 (wrong), 0.7 (ok), 0.6 (ok): risks 0, 1/2, 1/3, 1/4
    expected = ((0 + 1 / 2) / 2 + (1 / 2 + 1 / 3) / 2 + (1 / 3 + 1 / 4) / 2) / 4 / (1 - 1 / 4)
    assert math.isclose(aurc(probs, labels), expected, abs_tol=1e-12)
    logits, labels = _case(3, n=500)
    p = logits.softmax(1)
    conf, pred = p.max(1)
    assert math.isclose(aurc(p, labels), _naive_aurc(conf.numpy(), (pred == labels).double().numpy()), abs_tol=1e-12)


def test_brier_hand_worked() -> None:
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    assert math.isclose(brier(probs, torch.tensor([0, 1])), ((0.25 + 0.25) + (1 + 1)) / 2, abs_tol=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    logits, labels = _case(0, n=800)
    a = compute_metrics(labels, logits=logits, n_bootstrap=100, seed=1)
    b = compute_metrics(labels, logits=logits, n_bootstrap=100, seed=1)
    c = compute_metrics(labels, logits=logits, n_bootstrap=100, seed=2)
    assert a.intervals == b.intervals and a.intervals != c.intervals
    for name, (lo, hi) in a.intervals.items():
        assert lo <= hi
        if name in a.debiased:  # an ECE: the interval holds its own (debiased) point, not the biased plug-in
            assert lo <= a.debiased[name].debiased <= hi, name
        else:  # a normal interval: centred on the sample's value (no clip reached at N = 800)
            v = getattr(a.metrics, name)
            assert lo <= v <= hi and math.isclose(v - lo, hi - v, rel_tol=1e-9), name
    # a resample's accuracy is a multiple of 1/N and never leaves [0, 1]
    assert 0.0 <= a.intervals["accuracy"][0] <= a.intervals["accuracy"][1] <= 1.0


def test_accuracy_interval_has_the_binomial_width() -> None:
    """The accuracy's interval is the estimate -/+ 1.96 bootstrap sd: its half-width equals the binomial
    1.96 sqrt(a (1 - a) / N) to within 10% at 400 resamples (the sd of a 400-resample sd is 3.5%)."""
    logits, labels = _case(3, n=2000)
    r = compute_metrics(labels, logits=logits, n_bootstrap=400, seed=0, with_details=False)
    a = r.metrics.accuracy
    lo, hi = r.intervals["accuracy"]
    assert math.isclose((hi - lo) / 2, 1.959964 * math.sqrt(a * (1 - a) / 2000), rel_tol=0.10)
    assert math.isclose(a - lo, hi - a, rel_tol=1e-9)


def test_intervals_are_clipped_to_the_metric_range() -> None:
    """A near-perfect classifier's accuracy interval stops at 1 (it never reaches beyond what accuracy can be)."""
    labels = torch.arange(200) % 5
    logits = torch.nn.functional.one_hot(labels, 5).double() * 6
    logits[0] = logits[0].flip(0)  # row 0 (class 0) predicted as class 4: one mistake
    r = compute_metrics(labels, logits=logits, n_bootstrap=100, seed=0, with_details=False)
    assert r.metrics.accuracy == pytest.approx(199 / 200)
    assert r.intervals["accuracy"][1] == 1.0 and r.intervals["accuracy"][0] < 199 / 200


def test_one_resample_is_refused_with_the_cli_line() -> None:
    """One resample has no spread: the library refuses it with the same line as `--bootstrap 1`, not NaN intervals."""
    from vcal_cli.errors import UsageError

    logits, labels = _case(0, n=100)
    with pytest.raises(UsageError, match="--bootstrap 1 gives no interval"):
        compute_metrics(labels, logits=logits, n_bootstrap=1)


@pytest.mark.parametrize("k", [4, 40])
def test_bootstrap_weights_equal_explicit_resample(k: int) -> None:
    """Every metric of a weighted resample (classwise ECE's GEMM + sparse-bin path included) equals
    recomputing on the materialised resample."""
    from vcal_cli.metrics import evaluate_scores, make_scores

    logits, labels = _case(5, n=300, k=k)
    src, y = make_scores(labels, logits, None)
    ((vals, _),) = evaluate_scores([src], y, n_bins=15, n_bootstrap=3, seed=7)
    idx = torch.randint(0, 300, (3, 300), generator=torch.Generator().manual_seed(7))  # the same draws
    for r in range(3):
        direct = compute_metrics(labels[idx[r]], logits=logits[idx[r]], n_bootstrap=0).metrics.as_dict()
        for name, v in direct.items():
            assert math.isclose(float(vals[name][1 + r]), v, abs_tol=1e-10), name


def test_metrics_stream_over_row_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked reading (as for a memory-mapped cache) gives the same numbers as one chunk."""
    import vcal_cli.metrics.compute as m

    logits, labels = _case(3, n=500, k=12)
    whole = compute_metrics(labels, logits=logits.float(), n_bootstrap=20)
    monkeypatch.setattr(m, "ROW_CHUNK_ELEMS", 7 * 12)  # 7 rows at a time
    chunked = compute_metrics(labels, logits=logits.float(), n_bootstrap=20)
    for name, v in whole.metrics.as_dict().items():
        assert math.isclose(getattr(chunked.metrics, name), v, abs_tol=1e-12), name
        assert all(
            math.isclose(a, b, abs_tol=1e-12)
            for a, b in zip(whole.intervals.get(name, ()), chunked.intervals.get(name, ()), strict=True)
        )
    assert whole.intervals.keys() == chunked.intervals.keys() == set(m.METRIC_NAMES) - {"mce"}
    # the consistency draws of classwise ECE do not depend on how the rows are read
    a, b = whole.debiased["classwise_ece"].to_dict(), chunked.debiased["classwise_ece"].to_dict()
    assert a["p_value"] == b["p_value"]
    for key in ("value", "debiased", "noise_floor", "null_mean"):
        assert math.isclose(a[key], b[key], abs_tol=1e-12), key
    assert all(math.isclose(x, y, abs_tol=1e-12) for x, y in zip(a["interval"], b["interval"], strict=True))


@pytest.mark.parametrize(
    "bad",
    [
        dict(logits=torch.tensor([[float("nan"), 0.0]]), labels=torch.tensor([0])),
        dict(probs=torch.tensor([[0.7, 0.7]]), labels=torch.tensor([0])),
        dict(logits=torch.zeros(2, 3), labels=torch.tensor([0, 3])),
        dict(logits=torch.zeros(0, 3), labels=torch.zeros(0, dtype=torch.long)),
    ],
)
def test_invalid_inputs_raise_metric_error(bad: dict) -> None:
    labels = bad.pop("labels")
    with pytest.raises(MetricError):
        compute_metrics(labels, **bad, n_bootstrap=0)

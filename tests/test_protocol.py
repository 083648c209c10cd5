"""`--protocol vtst`: the V-TST paper's metric conventions, each checked against the library the paper's code calls
(torchmetrics for ECE/MCE, scikit-learn for NLL, Brier/K, AUROC and the FPR at 95% TPR) on the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score, roc_curve
from torchmetrics.classification import MulticlassCalibrationError

from vcal_cli.cli import app
from vcal_cli.evaluations.protocol import PROTOCOLS, Pooled, ood_id_positive, protocol_row

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = str(SAMPLES / "cnn_digits.safetensors")


def _splits(seed: int, n: int = 3, rows: int = 400, k: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        logits = torch.randn(rows, k, generator=g) * (1 + 3 * i)
        logits[:20, 0] = 80.0  # saturated rows: confidence exactly 1.0 in float64, torchmetrics' extra bin
        out.append((logits, torch.randint(0, k, (rows,), generator=g)))
    return out


def test_pooled_calibration_matches_torchmetrics_on_the_concatenation() -> None:
    splits = _splits(0)
    pooled = Pooled(n_bins=10)
    for lg, y in splits:
        pooled.add(lg, y)
    r = pooled.result()
    probs = torch.cat([torch.softmax(lg.double(), 1) for lg, _ in splits])
    y = torch.cat([y for _, y in splits])
    assert (probs.amax(1) == 1.0).sum() >= 60  # the case the bin conventions disagree on is present
    for norm, key in (("l1", "ece"), ("max", "mce")):
        ref = MulticlassCalibrationError(num_classes=7, n_bins=10, norm=norm)(probs, y)
        assert r[key] == pytest.approx(float(ref), abs=1e-6)  # torchmetrics sums in float32
    onehot = torch.nn.functional.one_hot(y, 7).double().numpy()
    # log_loss clips at the eps of the probabilities' dtype: float32 in the paper's code
    assert r["nll"] == pytest.approx(log_loss(y.numpy(), probs.float().numpy(), labels=list(range(7))), rel=1e-5)
    assert r["brier_k"] == pytest.approx(mean_squared_error(onehot, probs.numpy()), rel=1e-9)
    assert r["accuracy"] == pytest.approx(float((probs.argmax(1) == y).double().mean()), rel=1e-12)


def test_ood_with_in_distribution_positive_matches_scikit_learn() -> None:
    g = torch.Generator().manual_seed(1)
    id_msp = torch.rand(500, generator=g) * 0.5 + 0.5
    oods = [torch.rand(300, generator=g) * 0.7 + 0.3, torch.rand(200, generator=g)]
    got = ood_id_positive(id_msp, oods)
    y = np.r_[np.ones(500), np.zeros(500)]  # ID is label 1, as in the study's ood_metrics
    s = torch.cat([id_msp, *oods]).numpy()
    assert got["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert got["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    assert got["ood_n"] == 500


def test_shift_is_pooled_and_severity_means_divide_by_the_corruptions_present() -> None:
    p = PROTOCOLS.get("vtst")
    splits = _splits(2, n=4)
    shift = {
        (c, s): Pooled(n_bins=10).add(*splits[i]) for i, (c, s) in enumerate([("a", 1), ("b", 1), ("a", 2), ("b", 2)])
    }
    row = protocol_row(p, Pooled(n_bins=10).add(*splits[0]), shift, None)
    whole = Pooled(n_bins=10)
    for lg, y in splits:
        whole.add(lg, y)
    assert row["shift"]["ece"] == pytest.approx(whole.result()["ece"], abs=1e-12)  # one ECE over all rows
    eces = [st.result()["ece"] for st in shift.values()]
    assert row["shift"]["ece_by_severity"]["1"] == pytest.approx((eces[0] + eces[1]) / 2)
    assert row["shift"]["ece_by_severity"]["2"] == pytest.approx((eces[2] + eces[3]) / 2)
    assert row["shift"]["splits"] == 4 and "ood" not in row


def test_audit_protocol_vtst_end_to_end(runner, tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (150, 1, 8, 8), dtype=np.uint8), y=np.zeros(150, int))
    args = [
        "audit",
        CNN,
        "--protocol",
        "vtst",
        "--corruptions",
        "contrast,pixelate",
        "--severities",
        "1,5",
        "--ood",
        "npz:noise.npz",
        "--bootstrap",
        "0",
        "-o",
        "out",
        "--json",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    row, p = rep["protocol"], rep["settings"]["protocol"]
    assert p["ece_bins"] == 10 and p["corruptions"] == ["contrast", "pixelate"] and p["ood_sets"] == ["npz:noise.npz"]
    assert "fog" in p["corruptions_not_built"] and "brightness" in p["papers_corruptions_not_used"]
    assert row["shift"]["splits"] == 4 and set(row["shift"]["ece_by_severity"]) == {"1", "5"}
    # the shift columns pool the same splits the shift section lists; accuracy is the mean of equal-sized splits
    accs = [x["accuracy"] for x in rep["shift"]]
    assert row["shift"]["accuracy"] == pytest.approx(sum(accs) / len(accs), abs=1e-12)
    assert row["test"]["accuracy"] == pytest.approx(rep["metrics"]["accuracy"], abs=1e-12)
    msp = {x["dataset"]: x for x in rep["ood"] if x["score"] == "msp"}["npz:noise.npz"]
    assert row["ood"]["auroc"] == pytest.approx(msp["auroc"], abs=1e-12)  # AUROC does not depend on the positive
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Paper protocol 'vtst'" in md and "Shift ECE x100 per severity" in md


def test_retrain_protocol_has_a_row_per_head_and_implies_shift(runner) -> None:
    args = [
        "retrain",
        CNN,
        "--head",
        "temperature",
        "--protocol",
        "vtst",
        "--severities",
        "1",
        "--bootstrap",
        "0",
        "--json",
        "-o",
        "rt",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    built, _ = PROTOCOLS.get("vtst").built()
    assert rep["settings"]["protocol"]["corruptions"] == list(built) and len(built) == 9
    for name in ("original", "temperature"):
        assert rep["heads"][name]["protocol"]["shift"]["splits"] == 9
    t, o = rep["heads"]["temperature"]["protocol"], rep["heads"]["original"]["protocol"]
    assert t["test"]["accuracy"] == o["test"]["accuracy"] and t["test"]["nll"] != o["test"]["nll"]


def test_unknown_protocol_is_one_line(runner) -> None:
    line = one_line_error(runner.invoke(app, ["audit", CNN, "--protocol", "guo"]))
    assert line.startswith("error: --protocol 'guo'") and "vtst" in line


def test_the_protocol_implies_its_corruptions_in_the_api_too() -> None:
    from vcal_cli.errors import UsageError
    from vcal_cli.evaluations.robustness import RobustnessOptions

    built, missing = PROTOCOLS.get("vtst").built()
    assert RobustnessOptions(protocol="vtst").shift == built and bool(RobustnessOptions(protocol="vtst"))
    assert set(missing) == {"fog", "frost", "glass_blur", "snow"}
    assert RobustnessOptions(shift=("contrast",), protocol="vtst").shift == ("contrast",)  # the user's choice stays
    with pytest.raises(UsageError, match="vtst"):
        RobustnessOptions(protocol="guo")

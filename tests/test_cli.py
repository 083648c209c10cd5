"""The command line end to end: happy paths, the cache, --json, and every bad input (exit 2, one line)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchmetrics.functional.classification as tmf
from safetensors.torch import load_file, save_file

import vcal_cli.features as features_mod
from vcal_cli import save_checkpoint
from vcal_cli.cli import app
from vcal_cli.reports import REPORT_FILES

from .helpers import one_line_error, tiny_mlp


def _audit(runner, *args: str):
    return runner.invoke(app, ["audit", *args])


def test_audit_writes_report_and_reuses_cache(
    runner, sample_mlp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = _audit(runner, str(sample_mlp), "--data", "digits", "--out", "rep", "--bootstrap", "50")
    assert r.exit_code == 0, r.output
    assert "ECE-15" in r.stdout and "Accuracy" in r.stdout
    for name in REPORT_FILES:
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["settings"]["cache"]["hit"] is False
    assert rep["data"] == {"name": "digits", "split": "test", "n": 540}
    assert list(rep["metrics"]) == ["accuracy", "nll", "brier", "ece", "ece_adaptive", "mce", "classwise_ece", "aurc"]
    assert set(rep["intervals"]) == set(rep["metrics"]) - {"mce"}  # a maximum has no valid bootstrap interval
    assert rep["checkpoint"]["arch"] == "vcal:mlp" and rep["checkpoint"]["num_classes"] == 10
    assert len(rep["checkpoint"]["sha256"]) == 64
    assert sum(b["count"] for b in rep["reliability"]) == 540
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in html

    def no_forward(*a, **k):
        raise AssertionError("a forward pass ran although the features are cached")

    monkeypatch.setattr(features_mod, "extract_features", no_forward)
    r2 = _audit(runner, str(sample_mlp), "--out", "rep2", "--bootstrap", "50", "--json")
    assert r2.exit_code == 0, r2.output
    rep2 = json.loads(r2.stdout)
    assert rep2["settings"]["cache"]["hit"] is True
    assert rep2["metrics"] == rep["metrics"] and rep2["intervals"] == rep["intervals"]


def test_report_numbers_match_references_on_exported_logits(runner, sample_mlp: Path, tmp_path: Path) -> None:
    """The issue's 'done when': report.json agrees with torchmetrics and scikit-learn on the exported logits."""
    from sklearn.metrics import log_loss

    assert (
        runner.invoke(
            app, ["features", str(sample_mlp), "--split", "test", "--features-out", "t.safetensors"]
        ).exit_code
        == 0
    )
    t = load_file(str(tmp_path / "t.safetensors"))
    assert set(t) == {"features", "logits", "labels"} and t["features"].shape == (540, 1024)
    r = _audit(runner, str(sample_mlp), "--json", "--bootstrap", "0")
    rep = json.loads(r.stdout)
    p = t["logits"].double().softmax(1)
    conf_one = (p.max(1).values == 1.0).sum().item()
    ref_ece = float(tmf.multiclass_calibration_error(p, t["labels"], 10, n_bins=15))
    # torchmetrics puts confidence == 1.0 in an extra bin; with none such, both rules agree to 1e-6
    if conf_one == 0:
        assert math.isclose(rep["metrics"]["ece"], ref_ece, abs_tol=1e-6)
    assert math.isclose(rep["metrics"]["nll"], log_loss(t["labels"], p.numpy(), labels=list(range(10))), abs_tol=1e-6)
    assert math.isclose(rep["metrics"]["accuracy"], (p.argmax(1) == t["labels"]).double().mean().item(), abs_tol=1e-12)
    # and the features are the head's input: features @ W.T + b == logits
    from vcal_cli import load_checkpoint

    head = load_checkpoint(sample_mlp).head
    with torch.no_grad():
        assert torch.allclose(t["features"] @ head.weight.T + head.bias, t["logits"], atol=1e-4)


def test_audit_logits_file_npz_and_safetensors(runner, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 5, generator=g) * 2
    labels = torch.randint(0, 5, (300,), generator=g)
    np.savez(tmp_path / "l.npz", logits=logits.numpy(), labels=labels.numpy())
    save_file({"probs": logits.softmax(1).contiguous(), "labels": labels}, str(tmp_path / "p.safetensors"))
    a = json.loads(_audit(runner, "--logits", "l.npz", "--json", "--bootstrap", "0").stdout)
    b = json.loads(_audit(runner, "--logits", "p.safetensors", "--json", "--bootstrap", "0", "-o", "r2").stdout)
    assert a["data"]["n"] == 300 and a["checkpoint"]["num_classes"] == 5
    assert math.isclose(a["metrics"]["ece"], b["metrics"]["ece"], abs_tol=1e-6)
    assert math.isclose(a["metrics"]["nll"], b["metrics"]["nll"], abs_tol=1e-5)


def test_bins_flag_changes_every_binned_metric(runner, sample_mlp: Path) -> None:
    rep = json.loads(_audit(runner, str(sample_mlp), "--bins", "10", "--json", "--bootstrap", "0").stdout)
    assert len(rep["reliability"]) == 10 and rep["settings"]["bins"] == 10
    # the cnn sample spreads its confidences over more bins than the mlp (whose mass sits in the top bin)
    cnn = str(sample_mlp.parent / "cnn_digits.safetensors")
    ten, three = (
        json.loads(_audit(runner, cnn, "--bins", b, "--json", "--bootstrap", "0").stdout) for b in ("10", "3")
    )
    assert len(three["reliability"]) == 3
    for k in ("ece", "mce", "classwise_ece", "ece_adaptive"):  # every binned metric moves with the bin count
        assert abs(ten["metrics"][k] - three["metrics"][k]) > 1e-5, k
    assert ten["metrics"]["nll"] == three["metrics"]["nll"]  # an unbinned one does not


def test_cache_list_clear_and_cache_dir(runner, sample_mlp: Path, tmp_path: Path) -> None:
    assert _audit(runner, str(sample_mlp), "--cache-dir", "cc", "--bootstrap", "0", "--no-suggest").exit_code == 0
    listed = runner.invoke(app, ["cache", "list", "--cache-dir", "cc", "--json"])
    entries = json.loads(listed.stdout)
    assert len(entries) == 1 and entries[0]["data"] == "digits" and entries[0]["n"] == 540
    assert "1 entries" in runner.invoke(app, ["cache", "list", "--cache-dir", "cc"]).stdout
    # by default the audit also loads val, to score temperature scaling fitted on it: a second entry
    assert _audit(runner, str(sample_mlp), "--cache-dir", "cc", "--bootstrap", "0").exit_code == 0
    entries = json.loads(runner.invoke(app, ["cache", "list", "--cache-dir", "cc", "--json"]).stdout)
    assert sorted(e["n"] for e in entries) == [180, 540]
    assert runner.invoke(app, ["cache", "clear", "--cache-dir", "cc"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["cache", "list", "--cache-dir", "cc", "--json"]).stdout) == []


def test_broken_cache_entry_is_rebuilt(runner, sample_mlp: Path, tmp_path: Path) -> None:
    assert _audit(runner, str(sample_mlp), "--bootstrap", "0", "--no-suggest").exit_code == 0
    (entry,) = (tmp_path / "cache").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    r = _audit(runner, str(sample_mlp), "--bootstrap", "0", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["settings"]["cache"]["hit"] is False


def _nan_checkpoint(tmp_path: Path) -> Path:
    m = tiny_mlp()
    with torch.no_grad():
        m.model.fc.bias[0] = float("nan")
    return save_checkpoint(m, tmp_path / "nan.safetensors")


BAD = {
    "missing file": (["audit", "nope.safetensors"], "does not exist"),
    "not a checkpoint": (["audit", "junk.pt"], "not a readable checkpoint"),
    "truncated": (["audit", "trunc.safetensors"], "not a readable safetensors"),
    "arch does not fit": (["audit", "resnet.pt", "--arch", "torchvision:resnet18"], "does not fit --arch"),
    "pickle refused": (["audit", "full.pt"], "--trust-checkpoint"),
    "class count": (["audit", "three.safetensors"], "3 classes but data set 'digits' has 10"),
    "empty data": (["audit", "mlp.safetensors", "--data", "npz:empty.npz"], "empty"),
    "nan logits": (["audit", "nan.safetensors"], "NaN/inf logits"),
    "bad bins": (["audit", "mlp.safetensors", "--bins", "0"], "--bins"),
    "bad bins type": (["audit", "mlp.safetensors", "--bins", "x"], "--bins"),
    "unknown data": (["audit", "mlp.safetensors", "--data", "imagenet"], "choose one of"),
    "bad split": (["audit", "mlp.safetensors", "--split", "dev"], "--split 'dev'"),
    "bad device": (["audit", "mlp.safetensors", "--device", "tpu"], "--device 'tpu'"),
    "bad input size": (["audit", "mlp.safetensors", "--input-size", "3x32"], "--input-size"),
    "unknown flag": (["audit", "mlp.safetensors", "--binz", "3"], "No such option"),
    "both inputs": (["audit", "mlp.safetensors", "--logits", "l.npz"], "not both"),
    "bad logits file": (["audit", "--logits", "junk.pt"], "--logits"),
    "missing data root": (["audit", "mlp.safetensors", "--data", "svhn", "--data-root", "nowhere"], "train_32x32.mat"),
    "features out suffix": (["features", "mlp.safetensors", "--features-out", "x.npz"], "must end in .safetensors"),
    "features over input": (["features", "mlp.safetensors", "--features-out", "mlp.safetensors"], "refusing"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line(runner, tmp_path: Path, mlp_ckpt: Path, case: str) -> None:
    from vcal_cli.checkpoints import build_arch

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 50)
    (tmp_path / "trunc.safetensors").write_bytes(mlp_ckpt.read_bytes()[:2000])
    torch.save(build_arch("test_resnet", 10, in_chans=1).state_dict(), tmp_path / "resnet.pt")
    torch.save(tiny_mlp().model, tmp_path / "full.pt")
    save_checkpoint(tiny_mlp(num_classes=3), tmp_path / "three.safetensors")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 8, 8), np.uint8), y=np.zeros(0, int))
    np.savez(tmp_path / "l.npz", logits=np.zeros((3, 2)), labels=np.zeros(3, int))
    _nan_checkpoint(tmp_path)
    args, expect = BAD[case]
    before = {p for p in tmp_path.rglob("*") if "cache" not in p.parts}
    r = runner.invoke(app, args)
    line = one_line_error(r)
    assert expect in line, line
    after = {p for p in tmp_path.rglob("*") if "cache" not in p.parts}
    assert after == before, f"an error run wrote files: {after - before}"


def test_debug_shows_traceback(runner) -> None:
    from vcal_cli.errors import CheckpointError

    r = runner.invoke(app, ["audit", "nope.safetensors", "--debug"])
    assert isinstance(r.exception, CheckpointError)  # raised through, so its traceback is shown
    plain = runner.invoke(app, ["audit", "nope.safetensors"])
    assert isinstance(plain.exception, SystemExit) and plain.exit_code == 2  # without --debug: one line, exit 2


def test_help_and_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vcal_cli", "audit", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "--trust-checkpoint" in out.stdout and "--bins" in out.stdout
    v = subprocess.run([sys.executable, "-m", "vcal_cli", "--version"], capture_output=True, text=True, timeout=120)
    assert v.stdout.startswith("vcal ")

"""Features computed elsewhere (any framework): a file with each split's features, logits and labels and the original
head goes through `vcal retrain` like a checkpoint's cache, its head files re-audit on it; a bad file is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcal_cli import ExtractOptions, Workbench
from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error

CNN = SAMPLES / "cnn_digits.safetensors"


def _bundle(path: Path) -> dict[str, np.ndarray]:
    """What a JAX or TensorFlow user would save: the sample CNN's features, logits, labels and its head, as arrays."""
    bench = Workbench.open(CNN, "digits", ExtractOptions.of(cache_dir=str(path.parent / "cache")))
    arrays = {
        f"{s}_{p}": getattr(bench.features(s), p)[:].numpy()
        for s in ("train", "val", "test")
        for p in ("features", "logits", "labels")
    }
    arrays["head_weight"] = bench.model.head.weight.detach().numpy()
    arrays["head_bias"] = bench.model.head.bias.detach().numpy()
    arrays["classes"] = np.array([f"digit {i}" for i in range(10)])
    np.savez(path, **arrays)
    return arrays


def test_retrain_on_features_from_elsewhere_and_reaudit(runner, tmp_path: Path) -> None:
    _bundle(tmp_path / "feats.npz")
    direct = runner.invoke(app, ["audit", str(CNN), "--data", "digits", "--bootstrap", "0", "--json", "--no-suggest"])
    r = runner.invoke(app, ["audit", "feats.npz", "--bootstrap", "0", "--json", "--no-suggest"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"] == pytest.approx(json.loads(direct.stdout)["metrics"], abs=1e-9)
    r = runner.invoke(
        app,
        [
            "retrain",
            "feats.npz",
            "--head",
            "temperature",
            "--head",
            "ce",
            "--epochs",
            "3",
            "--bootstrap",
            "0",
            "--out",
            "out",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["class_names"][0] == "digit 0" and rep["data"]["name"] == "features:feats.npz"
    head = tmp_path / "out" / "feats.temperature.head.safetensors"
    assert head.is_file()  # no backbone to write: the head alone, tied to the file
    again = runner.invoke(
        app, ["audit", "feats.npz", "--head-file", str(head), "--bootstrap", "0", "--json", "--no-suggest"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["metrics"] == pytest.approx(rep["heads"]["temperature"]["metrics"], abs=1e-6)


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda a: a.pop("head_bias"), "lacks head_bias"),
        (lambda a: a.update(val_labels=a["val_labels"] + 100), "val_labels must lie in 0..9"),
        (lambda a: a.update(head_bias=a["head_bias"] + 5.0), "differs from test_logits"),
        (lambda a: a.update(train_features=a["train_features"][:, :5]), "train_features must be"),
    ],
)
def test_a_bad_feature_file_is_one_line(runner, tmp_path: Path, change, expect: str) -> None:
    arrays = _bundle(tmp_path / "ok.npz")
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    line = one_line_error(runner.invoke(app, ["retrain", "bad.npz", "--head", "temperature"]))
    assert expect in line, line


def test_features_from_a_file_have_no_images(runner, tmp_path: Path) -> None:
    _bundle(tmp_path / "feats.npz")
    line = one_line_error(runner.invoke(app, ["retrain", "feats.npz", "--head", "temperature", "--shift"]))
    assert "holds features computed elsewhere, not images" in line

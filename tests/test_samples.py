"""The shipped sample checkpoints and the script that makes them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vcal_cli import AuditSettings, audit, load_checkpoint

from .conftest import ROOT, SAMPLES


@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_samples_are_small_vcal_checkpoints(name: str) -> None:
    path = SAMPLES / f"{name}.safetensors"
    assert path.stat().st_size < 5_000_000
    m = load_checkpoint(path)
    assert m.num_classes == 10 and m.preprocessing is not None and m.metadata["trained_on"] == "digits:train"


def test_a_sample_is_overconfident() -> None:
    """The issue's bar: test ECE of at least 0.02 for one sample, with confidence above accuracy."""
    rep = audit(SAMPLES / "cnn_digits.safetensors", data="digits", settings=AuditSettings(n_bootstrap=0))
    assert rep.metrics["ece"] >= 0.02
    bins = rep.result.reliability
    mean_conf = sum(b.confidence * b.count for b in bins if b.count) / rep.result.n
    assert mean_conf > rep.metrics["accuracy"]


def test_training_script_is_deterministic(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_sample_checkpoints.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    a = mod.train("cnn_digits", tmp_path / "a", epochs=1)
    b = mod.train("cnn_digits", tmp_path / "b", epochs=1)
    assert a.read_bytes() == b.read_bytes()

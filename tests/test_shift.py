"""Corruptions: the CIFAR-10-C formulas on small inputs, seeded, shapes and ranges kept."""

from __future__ import annotations

import colorsys

import pytest
import torch

from vcal_cli.errors import UsageError
from vcal_cli.evaluations.shift import CORRUPTIONS, corrupt, hsv_to_rgb, rgb_to_hsv


@pytest.mark.parametrize("name", CORRUPTIONS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_corruption_keeps_shape_range_and_is_seeded(name: str, channels: int) -> None:
    x = torch.rand(4, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    for s in (1, 5):
        y = corrupt(x, name, s, seed=1)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert torch.equal(y, corrupt(x, name, s, seed=1))
    # severity 5 moves the images further than severity 1 (saturate's table is not monotone: 0.3x then 2.5x)
    if name != "saturate":
        assert (corrupt(x, name, 5, seed=1) - x).abs().mean() >= (corrupt(x, name, 1, seed=1) - x).abs().mean() - 1e-3


def test_hsv_round_trip_matches_colorsys() -> None:
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hsv = rgb_to_hsv(x)
    r, g, b = x[0, :, 1, 2].tolist()
    assert torch.allclose(hsv[0, :, 1, 2], torch.tensor(colorsys.rgb_to_hsv(r, g, b), dtype=torch.float64))
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-12)


def test_formulas() -> None:
    x = torch.full((1, 3, 8, 8), 0.5)
    x[..., :4] = 0.2
    c = corrupt(x, "contrast", 2)  # mean 0.35; (x - mean) * 0.5 + mean
    assert torch.allclose(c[..., :4], torch.full_like(c[..., :4], 0.275)) and torch.allclose(
        c[..., 4:], torch.full_like(c[..., 4:], 0.425)
    )
    grey = torch.full((1, 3, 2, 2), 0.5)
    assert torch.allclose(corrupt(grey, "brightness", 5), torch.full_like(grey, 0.8))  # V + 0.3 on a grey pixel
    flat = torch.full((1, 1, 32, 32), 0.3)
    assert torch.allclose(corrupt(flat, "gaussian_blur", 5), flat, atol=1e-6)  # blur keeps constant images
    assert torch.allclose(corrupt(flat, "pixelate", 5), flat, atol=1e-6)
    noisy = corrupt(torch.full((1, 1, 256, 256), 0.5), "gaussian_noise", 3, seed=0)
    assert abs(float(noisy.std()) - 0.08) < 0.003  # std from the CIFAR-10-C table
    hit = (corrupt(torch.full((1, 1, 256, 256), 0.5), "impulse_noise", 5) != 0.5).double().mean()
    assert abs(float(hit) - 0.07) < 0.005


def test_bad_names_and_severities() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(UsageError, match="choose one of"):
        corrupt(x, "fog", 1)
    with pytest.raises(UsageError, match="1..5"):
        corrupt(x, "contrast", 6)


def test_audit_shift_section_cached_and_gateable(runner, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json

    import vcal_cli.features as features_mod
    from vcal_cli.cli import app

    from .conftest import SAMPLES
    from .helpers import one_line_error

    args = [
        "audit",
        str(SAMPLES / "cnn_digits.safetensors"),
        "--shift",
        "--corruptions",
        "contrast,gaussian_noise",
        "--severities",
        "1,5",
        "--bootstrap",
        "0",
        "--json",
    ]
    r = runner.invoke(app, [*args, "-o", "a"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [(x["corruption"], x["severity"]) for x in rep["shift"]] == [
        ("contrast", 1),
        ("contrast", 5),
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
    ]
    assert set(rep["shift_mean"]) == {"severity_1", "severity_5"}
    assert rep["shift_mean"]["severity_5"]["accuracy"] < rep["metrics"]["accuracy"]
    assert (tmp_path / "a" / "shift.png").stat().st_size > 0

    def no_forward(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a corrupted split was extracted again")

    monkeypatch.setattr(features_mod, "extract_features", no_forward)
    again = json.loads(runner.invoke(app, [*args, "-o", "b"]).stdout)
    assert again["shift"] == rep["shift"]
    g = runner.invoke(app, ["gate", "a/report.json", "-b", "a/report.json", "--max", "shift_mean.severity_5.ece=0.0"])
    assert g.exit_code == 1
    assert "1..5" in one_line_error(runner.invoke(app, [*args[:2], "--shift", "--severities", "0"]))
    assert "unknown corruption 'fog'" in one_line_error(runner.invoke(app, [*args[:2], "--corruptions", "fog"]))

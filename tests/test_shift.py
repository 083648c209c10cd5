"""Corruptions: the CIFAR-10-C formulas on small inputs, seeded, shapes and ranges kept."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from scipy import ndimage

from vcal_cli.errors import UsageError
from vcal_cli.evaluations.shift import (
    CORRUPTIONS,
    STRENGTHS,
    corrupt,
    defocus_blur,
    disk_kernel,
    elastic_at,
    hsv_to_rgb,
    motion_blur_at,
    rgb_to_hsv,
    strengths_for,
)


@pytest.mark.parametrize("name", CORRUPTIONS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_corruption_keeps_shape_range_and_is_seeded(name: str, channels: int) -> None:
    x = torch.rand(4, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    for s in (1, 5):
        y = corrupt(x, name, s, seed=1)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert torch.equal(y, corrupt(x, name, s, seed=1))
    # severity 5 moves the images further than severity 1. Not for saturate (0.3x then 2.5x) and not for elastic on
    # white noise: its severity 1 is a pure affine jitter of 8% of the side, severity 5 a 3% jitter plus a warp
    if name not in ("saturate", "elastic_transform"):
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
    noisy = corrupt(torch.full((1, 1, 256, 256), 0.5), "gaussian_noise", 3, seed=0, strengths="cifar")
    assert abs(float(noisy.std()) - 0.08) < 0.003  # std from the CIFAR-10-C table
    hit = (corrupt(torch.full((1, 1, 256, 256), 0.5), "impulse_noise", 5, strengths="cifar") != 0.5).double().mean()
    assert abs(float(hit) - 0.07) < 0.005


def test_bad_names_and_severities() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(UsageError, match="choose one of"):
        corrupt(x, "snow", 1)
    with pytest.raises(UsageError, match="1..5"):
        corrupt(x, "contrast", 6)


def test_audit_shift_section_cached_and_gateable(runner, tmp_path, monkeypatch) -> None:
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

    def no_forward(*a, **k):
        raise AssertionError("a corrupted split was extracted again")

    monkeypatch.setattr(features_mod, "extract_features", no_forward)
    again = json.loads(runner.invoke(app, [*args, "-o", "b"]).stdout)
    assert again["shift"] == rep["shift"]
    g = runner.invoke(app, ["gate", "a/report.json", "-b", "a/report.json", "--max", "shift_mean.severity_5.ece=0.0"])
    assert g.exit_code == 1
    assert "1..5" in one_line_error(runner.invoke(app, [*args[:2], "--shift", "--severities", "0"]))
    assert "unknown corruption 'fog'" in one_line_error(runner.invoke(app, [*args[:2], "--corruptions", "fog"]))


# --- the corruptions that call OpenCV, ImageMagick or SciPy in the generators, against SciPy on the same draws ---


def _np(x: torch.Tensor) -> np.ndarray:
    return x.double().numpy()


@pytest.mark.parametrize(("radius", "alias"), [(0.3, 0.4), (1.5, 0.1), (3, 0.1), (10, 0.5)])
def test_defocus_matches_scipy_mirror_correlation(radius: float, alias: float) -> None:
    # the generators' disk: aliased disk, normalised, GaussianBlur (ksize 3 or 5, REFLECT_101 = SciPy 'mirror')
    r = 8 if radius <= 8 else int(radius)
    t = np.arange(-r, r + 1)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).astype(float)
    g = np.exp(-0.5 * (np.arange(-1, 2) if radius <= 8 else np.arange(-2, 3)) ** 2 / alias**2)
    disk = ndimage.correlate1d(
        ndimage.correlate1d(disk / disk.sum(), g / g.sum(), 0, mode="mirror"), g / g.sum(), 1, mode="mirror"
    )
    k = disk_kernel(radius, alias).numpy()
    s = k.shape[0] // 2
    assert np.allclose(disk[r - s : r + s + 1, r - s : r + s + 1], k, atol=1e-12) and np.isclose(disk.sum(), k.sum())
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    ours = defocus_blur(x, (radius, alias), torch.Generator())
    ref = np.stack([[ndimage.correlate(c, disk, mode="mirror") for c in img] for img in _np(x)]).clip(0, 1)
    assert np.abs(_np(ours) - ref).max() < 1e-5


def test_motion_blur_is_imagemagicks_one_sided_kernel() -> None:
    x = torch.zeros(2, 1, 9, 9)
    x[:, 0, 4, 6] = 1.0  # one bright pixel
    out = motion_blur_at(x, radius=2, sigma=1.0, angles=torch.tensor([0.0, 90.0]))
    k = np.exp(-(np.arange(5) ** 2) / 2.0)
    k /= k.sum()
    # angle 0 samples x(r, c + i): the pixel at column 6 spreads to columns 6, 5, 4, 3, 2 with weights k_0..k_4
    assert np.allclose(out[0, 0, 4, 2:7].numpy()[::-1], k, atol=1e-6) and out[0, 0, 4, 7:].abs().max() < 1e-7
    # angle 90 samples x(r + i, c): the pixel spreads upwards along column 6
    assert np.allclose(out[1, 0, 0:5, 6].numpy()[::-1], k, atol=1e-6)
    # edge pixels beyond the border: a constant image stays constant
    flat = torch.full((1, 3, 8, 8), 0.4)
    assert torch.allclose(motion_blur_at(flat, 9, 2.5, torch.tensor([30.0])), flat, atol=1e-6)


@pytest.mark.parametrize("table", ["cifar", "imagenet"])
@pytest.mark.parametrize("severity", [2, 5])
def test_elastic_matches_scipy(table: str, severity: int) -> None:
    gen = torch.Generator().manual_seed(severity)
    n, h = 2, 32
    x = torch.rand(n, 3, h, h, generator=gen)
    jitter = torch.rand(n, 3, 2, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.rand(n, 2, h, h, generator=gen, dtype=torch.float64) * 2 - 1
    p = STRENGTHS[table]["elastic_transform"][severity - 1]
    ours = _np(elastic_at(x, p, jitter, noise))
    alpha, sigma, jit = (f * h for f in p)
    for i in range(n):
        # OpenCV's getAffineTransform maps pts1 -> pts2 (as (x, y)); warpAffine samples the source at the inverse
        c, sq = np.array([h // 2, h // 2], float), h // 3
        pts1 = np.array([c + sq, [c[0] + sq, c[1] - sq], c - sq])
        pts2 = pts1 + jitter[i].numpy() * jit
        m = np.linalg.lstsq(np.c_[pts1, np.ones(3)], pts2, rcond=None)[0].T  # (2, 3) on (x, y)
        inv = np.linalg.inv(m[:, :2])
        # scipy works in (row, col): swap axes of the inverse map
        mat = inv[::-1, ::-1]
        off = -(mat @ m[::-1, 2])
        warped = np.stack([ndimage.affine_transform(ch, mat, off, order=1, mode="mirror") for ch in _np(x[i])])
        dx = ndimage.gaussian_filter(noise[i, 0].numpy(), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(noise[i, 1].numpy(), sigma, mode="reflect", truncate=3) * alpha
        yy, xx = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
        ref = np.stack([ndimage.map_coordinates(ch, [yy + dy, xx + dx], order=1, mode="reflect") for ch in warped])
        assert np.abs(ours[i] - ref.clip(0, 1)).max() < 1e-4


def test_strength_tables_follow_image_size() -> None:
    assert strengths_for(8, 8) == strengths_for(32, 32) == "cifar" and strengths_for(224, 224) == "imagenet"
    assert set(STRENGTHS["cifar"]) == set(STRENGTHS["imagenet"]) == set(CORRUPTIONS.names())
    big = torch.full((1, 1, 128, 128), 0.5)
    assert abs(float(corrupt(big, "gaussian_noise", 1).std()) - 0.08) < 0.003  # ImageNet-C's severity-1 std
    assert abs(float(corrupt(big, "gaussian_noise", 1, strengths="cifar").std()) - 0.04) < 0.002
    with pytest.raises(UsageError, match="imagenet"):
        corrupt(big, "contrast", 1, strengths="tiny")

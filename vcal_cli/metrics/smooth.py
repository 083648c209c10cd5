"""Smooth ECE (Blasiok & Nakkiran, ICLR 2024) and its kernel-smoothed reliability curve.

smECE_sigma(f, y) = integral of |r_sigma(t)| delta_sigma(t) dt / integral of delta_sigma(t) dt, where
r_sigma = (K_sigma * (f - y)) / (K_sigma * 1) is the Nadaraya-Watson regression of the residual f - y with
a Gaussian kernel reflected at 0 and 1, and delta_sigma = K_sigma * 1 the matching density. The bandwidth
is the fixed point sigma* = smECE_sigma*(f, y), found by bisection on [0, 1] (the estimator is then
hyperparameter-free and consistent). Computation follows the reference implementation's discretisation
(relplot 0.x), so that the numbers agree with it to 1e-6 (tested):

- the samples are spread linearly onto G = max(2000, round(20 / sigma)) // 2 + 1 grid points on [0, 1];
- the grid is mirrored at both ends and convolved with the Gaussian sampled at the same spacing;
- the smoothed values are interpolated linearly at T = max(200, round(10 / sigma)) points, and
  r = smooth(f - y) / (smooth(1) + 1e-4);
- the bisection starts at sigma = 1, then halves the interval 10 times (sigma to within 1/1024), stopping
  below sigma = 0.001.

For top-label calibration f is the confidence and y the correctness of the top class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MESH = 200  # evaluation points at least
EPS = 1e-3  # the smallest bandwidth searched
REFINE = 10  # bisection steps


def _grid(f: Tensor, w: Tensor, g: int) -> Tensor:
    """Spread weights w at points f in [0, 1] linearly onto g equally spaced grid points."""
    pos = f * (g - 1)
    i = pos.long().clamp(0, g - 2)
    frac = pos - i
    out = torch.zeros(g, dtype=torch.float64)
    out.index_add_(0, i, (1 - frac) * w)
    out.index_add_(0, i + 1, frac * w)
    return out


def _smooth(values: Tensor, sigma: float) -> Tensor:
    """Convolve grid values with the Gaussian of width sigma, mirrored at 0 and 1; same length."""
    g = len(values)
    t = torch.linspace(0, 1, g, dtype=torch.float64)
    kernel = torch.exp(-((t - 0.5) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    ext = torch.cat([values.flip(0)[:-1], values, values.flip(0)[1:]])
    size = len(ext) + g - 1  # the full linear convolution, by FFT (the kernel is as long as the grid)
    full = torch.fft.irfft(torch.fft.rfft(ext, size) * torch.fft.rfft(kernel, size), size)
    valid = full[g - 1 : len(ext)]  # the positions where the kernel lies inside the mirrored grid
    return valid[g // 2 : g // 2 + g]


def _interp(t: Tensor, y: Tensor) -> Tensor:
    """Piecewise-linear y (on equally spaced points of [0, 1]) evaluated at t."""
    n = len(y)
    i = (t * (n - 1)).long().clamp(0, n - 2)
    r = (t - i / (n - 1)) * (n - 1)
    return y[i] * (1 - r) + y[i + 1] * r


def _apply(f: Tensor, w: Tensor, t: Tensor, sigma: float) -> Tensor:
    g = max(2000, round(20 / sigma)) // 2 + 1
    return _interp(t, _smooth(_grid(f, w, g), sigma))


def _mesh(sigma: float) -> Tensor:
    return torch.linspace(0, 1, max(round(10 / sigma), MESH), dtype=torch.float64)


def smooth_ece_at(conf: Tensor, correct: Tensor, sigma: float) -> float:
    """smECE at a fixed bandwidth sigma."""
    f, y = conf.double(), correct.double()
    t = _mesh(sigma)
    resid = _apply(f, f - y, t, sigma)
    dens = _apply(f, torch.ones_like(f), t, sigma) + 1e-4
    r = resid / dens
    return float((r.abs() * dens).sum() / dens.sum())


def bandwidth(conf: Tensor, correct: Tensor) -> float:
    """The fixed point sigma* = smECE_sigma* by bisection (see the module docstring)."""

    def wide_enough(s: float) -> bool:
        return s < EPS or s < smooth_ece_at(conf, correct, s)

    if wide_enough(1.0):
        return 1.0
    hi, lo = 1.0, 0.0
    for _ in range(REFINE):
        mid = (hi + lo) / 2
        if wide_enough(mid):
            lo = mid
        else:
            hi = mid
    return hi


def smooth_ece(conf: Tensor, correct: Tensor) -> float:
    """Smooth ECE of confidences in [0, 1] against 0/1 outcomes (top-label: conf and correctness)."""
    return smooth_ece_at(conf, correct, bandwidth(conf, correct))


@dataclass(frozen=True, kw_only=True)
class SmoothCurve:
    """The kernel reliability curve: accuracy(t) = t - r(t) on a mesh, the density there, and sigma*."""

    confidence: list[float]
    accuracy: list[float]
    density: list[float]  # relative: integrates to about 1 over [0, 1]
    sigma: float
    smece: float


def smooth_curve(conf: Tensor, correct: Tensor, points: int = 101) -> SmoothCurve:
    f, y = conf.double(), correct.double()
    sigma = bandwidth(f, y)
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    resid = _apply(f, f - y, t, sigma)
    dens = _apply(f, torch.ones_like(f), t, sigma) + 1e-4
    acc = (t - resid / dens).clamp(0, 1)
    rel = dens / (dens.mean() if dens.mean() > 0 else 1)
    return SmoothCurve(
        confidence=t.tolist(),
        accuracy=acc.tolist(),
        density=rel.tolist(),
        sigma=sigma,
        smece=smooth_ece_at(f, y, sigma),
    )


def _grid_rows(f: Tensor, w: Tensor, g: int) -> Tensor:
    """`_grid` for each row of weights w (R, N) at the shared points f (N,): (R, g)."""
    pos = f * (g - 1)
    i = pos.long().clamp(0, g - 2)
    frac = pos - i
    out = torch.zeros(len(w), g, dtype=torch.float64)
    out.index_add_(1, i, (1 - frac) * w)
    out.index_add_(1, i + 1, frac * w)
    return out


def _smooth_rows(values: Tensor, sigma: float) -> Tensor:
    """`_smooth` along the last dimension of (R, g)."""
    g = values.shape[-1]
    t = torch.linspace(0, 1, g, dtype=torch.float64)
    kernel = torch.exp(-((t - 0.5) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    ext = torch.cat([values.flip(-1)[:, :-1], values, values.flip(-1)[:, 1:]], dim=-1)
    size = ext.shape[-1] + g - 1
    full = torch.fft.irfft(torch.fft.rfft(ext, size) * torch.fft.rfft(kernel, size), size)
    return full[:, g - 1 : ext.shape[-1]][:, g // 2 : g // 2 + g]


def smooth_batch(conf: Tensor, correct: Tensor, w: Tensor, sigma: float, shared_weights: bool = False) -> Tensor:
    """smECE at a fixed bandwidth for each row of resampling weights w (R, N) and outcomes ((N,) or (R, N)):
    `smooth_ece_at` with every sample counted w times (rows of ones and the sample's outcomes give it exactly)."""
    f = conf.double()
    y = correct.double().expand_as(w)
    t = _mesh(sigma)
    g = max(2000, round(20 / sigma)) // 2 + 1
    i = (t * (g - 1)).long().clamp(0, g - 2)
    r = (t - i / (g - 1)) * (g - 1)

    def apply(v: Tensor) -> Tensor:
        s = _smooth_rows(_grid_rows(f, v, g), sigma)
        return s[:, i] * (1 - r) + s[:, i + 1] * r

    resid = apply(w * (f - y))
    dens = (apply(w[:1]) if shared_weights else apply(w)) + 1e-4  # rows of equal weights share one density
    return ((resid / dens).abs() * dens).sum(1) / dens.sum(1).expand(len(resid))

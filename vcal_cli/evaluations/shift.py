"""Common corruptions at the CIFAR-10-C strengths (Hendrycks & Dietterich, ICLR 2019), batched in torch.

Each corruption maps pixels (N, C, H, W) in [0, 1] and a severity 1..5 to corrupted pixels, with its
severity table taken from the benchmark's generator for 32x32 images (`make_cifar_c.py`). Randomness
comes from an explicit `torch.Generator`, so a seed fixes the corrupted split. Grey images take the
RGB formulas channel-wise where those need colour (brightness and saturation act on HSV).

`vcal audit --shift` applies them through `corrupted_split`. Not yet here: defocus, motion and zoom
blur, elastic transform, the weather corruptions, and ImageNet-C strengths for large inputs.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vcal_cli._registry import Registry

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")

# CIFAR-10-C severity tables (make_cifar_c.py)
GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)  # std of additive noise
SHOT_NOISE = (500, 250, 100, 75, 50)  # Poisson rate scale
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)  # salt-and-pepper fraction
GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)  # sigma in pixels
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor towards the per-image mean
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # HSV saturation * a + b
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # down-scale factor (box filter both ways)
JPEG = (80, 65, 58, 50, 40)  # quality


def _register(name: str) -> Callable[[Corruption], Corruption]:
    return CORRUPTIONS.register(name, f"{name} (CIFAR-10-C strengths)")


@_register("gaussian_noise")
def gaussian_noise(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    return (x + torch.randn(x.shape, generator=gen) * GAUSSIAN_NOISE[severity - 1]).clamp(0, 1)


@_register("shot_noise")
def shot_noise(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    c = SHOT_NOISE[severity - 1]
    return (torch.poisson(x * c, generator=gen) / c).clamp(0, 1)


@_register("impulse_noise")
def impulse_noise(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """A fraction of the values set to 0 or 1 with equal odds (scikit-image's 's&p', per value)."""
    u = torch.rand(x.shape, generator=gen)
    salt = torch.rand(x.shape, generator=gen) < 0.5
    hit = u < IMPULSE_NOISE[severity - 1]
    return torch.where(hit, salt.to(x.dtype), x)


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@_register("gaussian_blur")
def gaussian_blur(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Separable Gaussian blur with 'nearest' borders (scikit-image's default mode)."""
    k = _gaussian_kernel(GAUSSIAN_BLUR[severity - 1]).to(x)
    r, c = len(k) // 2, x.shape[1]
    y = F.pad(x, (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c).clamp(0, 1)


@_register("contrast")
def contrast(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)  # per image and channel, as the generator's axis=(0, 1)
    return ((x - means) * CONTRAST[severity - 1] + means).clamp(0, 1)


def rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    v, delta = maxc, maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-12)
    h = torch.where(maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    k = lambda n: (n + h * 6) % 6  # noqa: E731 - the standard closed form, one line per channel
    f = lambda n: v - v * s * torch.clamp(torch.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return torch.stack([f(5), f(3), f(1)], 1)


def _hsv(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    out = hsv_to_rgb(fn(rgb_to_hsv(rgb))).clamp(0, 1)
    return out.mean(1, keepdim=True) if x.shape[1] == 1 else out


@_register("brightness")
def brightness(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    c = BRIGHTNESS[severity - 1]
    return _hsv(x, lambda hsv: torch.cat([hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)], 1))


@_register("saturate")
def saturate(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    a, b = SATURATE[severity - 1]
    return _hsv(x, lambda hsv: torch.cat([hsv[:, :1], (hsv[:, 1:2] * a + b).clamp(0, 1), hsv[:, 2:]], 1))


@_register("pixelate")
def pixelate(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    c = PIXELATE[severity - 1]
    small = F.interpolate(x, size=(int(h * c), int(w * c)), mode="area")  # a box filter, as PIL's BOX
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


@_register("jpeg_compression")
def jpeg_compression(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """PIL JPEG at the benchmark's quality, image by image (no batched JPEG codec in torch)."""
    from PIL import Image

    q = JPEG[severity - 1]
    out = torch.empty_like(x)
    arr = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, a in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, "JPEG", quality=q)
        dec = np.asarray(Image.open(buf)).astype(np.float32) / 255
        out[i] = torch.from_numpy(dec.reshape(a.shape)).permute(2, 0, 1)
    return out


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Apply a registered corruption at severity 1..5 with a seeded generator."""
    from vcal_cli.errors import UsageError

    if severity not in range(1, 6):
        raise UsageError(f"--severities: {severity} is not in 1..5")
    return CORRUPTIONS.get(name)(x.float(), severity, torch.Generator().manual_seed(seed))


def corrupted_split(split, name: str, severity: int, seed: int = 0, batch_size: int = 256):  # noqa: ANN001, ANN201
    """A copy of an in-memory `ImageSplit` with corrupted pixels, named `data~corruption@severity`.

    Corruptions act on the native pixels, before resizing and normalisation. Its identity holds the
    corruption, severity and seed, so the feature cache keeps one entry per corrupted split.
    """
    import dataclasses

    from vcal_cli.errors import DataError

    if split.images is None:
        raise DataError(f"--shift needs an in-memory data set; '{split.name}' is read from image files")
    x = split.images.float() / 255.0 if split.images.dtype == torch.uint8 else split.images.float()
    out = torch.cat([corrupt(x[i : i + batch_size], name, severity, seed + i) for i in range(0, len(x), batch_size)])
    return dataclasses.replace(
        split,
        name=f"{split.name}~{name}@{severity}",
        images=out,
        identity={**split.identity, "corruption": name, "severity": severity, "seed": seed},
    )

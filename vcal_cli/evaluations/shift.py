"""Common corruptions of CIFAR-10-C and ImageNet-C (Hendrycks & Dietterich, ICLR 2019), batched in torch.

Each corruption maps pixels (N, C, H, W) in [0, 1] and one severity's parameter to corrupted pixels. The
parameters come from the benchmark's generators: `make_cifar_c.py` for small (32x32-class) inputs and
`make_imagenet_c.py` for large ones (224x224); `strengths_for` picks the table from the image size. Randomness
comes from an explicit `torch.Generator`, so a seed fixes the corrupted split. Grey images take the RGB
formulas channel-wise where those need colour (brightness and saturation act on HSV).

Where the originals call OpenCV, ImageMagick or SciPy, the torch versions follow their definitions: the
border modes (OpenCV's REFLECT_101 for defocus and the elastic affine warp, SciPy's 'reflect' for the elastic
displacement field, ImageMagick's edge pixels for motion blur), ImageMagick's one-sided Gaussian motion
kernel of width 2*ceil(radius)+1, and bilinear sampling. Two known differences: OpenCV's warpAffine rounds
sampling positions to 1/32 pixel and the generators store uint8 images, while these stay in float32.

`vcal audit --shift` applies them through `corrupted_split`. Not here: glass and zoom blur and the
weather corruptions (snow, frost, fog, spatter), which the issue did not ask for.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vcal_cli._registry import Registry
from vcal_cli.errors import DataError, UsageError

Corruption = Callable[[Tensor, Any, torch.Generator], Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")

# Severity tables: name -> five parameters, from make_cifar_c.py ("cifar") and make_imagenet_c.py ("imagenet").
# Elastic's three numbers are (alpha, sigma, affine jitter) as fractions of the image side (CIFAR: IMSIZE * f;
# ImageNet: 244 * f on 224-pixel images, so the fraction is 244/224 * f).
_E = 244 / 224
STRENGTHS: dict[str, dict[str, tuple]] = {
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std of additive noise
        "shot_noise": (500, 250, 100, 75, 50),  # Poisson rate scale
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt-and-pepper fraction
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, anti-alias sigma
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma in pixels
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # ImageMagick radius, sigma
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor towards the per-image mean
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # HSV saturation * a + b
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # down-scale factor (box filter both ways)
        "jpeg_compression": (80, 65, 58, 50, 40),  # quality
        "elastic_transform": (
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ),
    },
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "elastic_transform": tuple(
            (a * _E, s * _E, j * _E)
            for a, s, j in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
        ),
    },
}
STRENGTH_NAMES = {"cifar": "CIFAR-10-C", "imagenet": "ImageNet-C"}
SMALL_SIDE = 96  # images whose longer side is at most this many pixels take the CIFAR-10-C strengths


def strengths_for(height: int, width: int) -> str:
    """'cifar' for 32x32-class inputs (longer side <= 96 px: CIFAR, SVHN, MNIST, digits), else 'imagenet'."""
    return "cifar" if max(height, width) <= SMALL_SIDE else "imagenet"


def _register(name: str) -> Callable[[Corruption], Corruption]:
    return CORRUPTIONS.register(name, name.replace("_", " "))


# ---------------------------------------------------------------------------------------------------------------
# borders, filters and sampling


def border_index(i: Tensor, n: int, mode: str) -> Tensor:
    """Map integer positions (any range) into 0..n-1: 'edge' repeats the border pixel, 'reflect101' mirrors
    about it (OpenCV's default, SciPy's 'mirror'), 'symmetric' mirrors and repeats it (SciPy's 'reflect')."""
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        i = i % (2 * n - 2)
        return torch.where(i >= n, 2 * n - 2 - i, i)
    if mode == "symmetric":
        i = i % (2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def _pad(x: Tensor, p: int, mode: str, dims: tuple[int, ...] = (-2, -1)) -> Tensor:
    """Pad `p` pixels on both sides of each of `dims`, borders by `mode`."""
    for d in dims:
        n = x.shape[d]
        x = x.index_select(d, border_index(torch.arange(-p, n + p), n, mode).to(x.device))
    return x


def _filter2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every channel with one odd square kernel, borders by `mode`."""
    r, c = kernel.shape[-1] // 2, x.shape[1]
    return F.conv2d(_pad(x, r, mode), kernel.to(x).expand(c, 1, -1, -1), groups=c)


def _gaussian_1d(sigma: float, radius: int) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _separable(x: Tensor, k: Tensor, mode: str) -> Tensor:
    r, c = len(k) // 2, x.shape[1]
    k = k.to(x)
    y = F.conv2d(_pad(x, r, mode, (-1,)), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(_pad(y, r, mode, (-2,)), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def bilinear(x: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """Sample x (N, C, H, W) at real positions rows, cols (N, H', W') by bilinear interpolation, borders by `mode`."""
    n, c, h, w = x.shape
    r0, c0 = rows.floor(), cols.floor()
    fr, fc = (rows - r0).unsqueeze(1), (cols - c0).unsqueeze(1)
    r0, c0 = r0.long(), c0.long()
    flat = x.reshape(n, c, h * w)

    def at(r: Tensor, q: Tensor) -> Tensor:
        idx = border_index(r, h, mode) * w + border_index(q, w, mode)
        return flat.gather(2, idx.reshape(n, 1, -1).expand(-1, c, -1)).reshape(n, c, *rows.shape[1:])

    top = at(r0, c0) * (1 - fc) + at(r0, c0 + 1) * fc
    bottom = at(r0 + 1, c0) * (1 - fc) + at(r0 + 1, c0 + 1) * fc
    return top * (1 - fr) + bottom * fr


# ---------------------------------------------------------------------------------------------------------------
# noise


@_register("gaussian_noise")
def gaussian_noise(x: Tensor, std: float, gen: torch.Generator) -> Tensor:
    return (x + torch.randn(x.shape, generator=gen) * std).clamp(0, 1)


@_register("shot_noise")
def shot_noise(x: Tensor, rate: float, gen: torch.Generator) -> Tensor:
    return (torch.poisson(x * rate, generator=gen) / rate).clamp(0, 1)


@_register("impulse_noise")
def impulse_noise(x: Tensor, amount: float, gen: torch.Generator) -> Tensor:
    """A fraction of the values set to 0 or 1 with equal odds (scikit-image's 's&p', per value)."""
    u = torch.rand(x.shape, generator=gen)
    salt = torch.rand(x.shape, generator=gen) < 0.5
    return torch.where(u < amount, salt.to(x.dtype), x)


# ---------------------------------------------------------------------------------------------------------------
# blur


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The generators' `disk`: an aliased disk, normalised, smoothed by OpenCV's GaussianBlur (REFLECT_101),
    then cropped to its non-zero support (which does not change the filter)."""
    r = 8 if radius <= 8 else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).double()
    disk = _separable((disk / disk.sum())[None, None], _gaussian_1d(alias_blur, 1 if radius <= 8 else 2), "reflect101")
    k = disk[0, 0]
    nz = k.nonzero()
    s = int((nz - r).abs().max()) if len(nz) else 0
    return k[r - s : r + s + 1, r - s : r + s + 1]


@_register("defocus_blur")
def defocus_blur(x: Tensor, p: tuple[float, float], gen: torch.Generator) -> Tensor:
    return _filter2d(x, disk_kernel(*p), "reflect101").clamp(0, 1)


@_register("gaussian_blur")
def gaussian_blur(x: Tensor, sigma: float, gen: torch.Generator) -> Tensor:
    """Separable Gaussian blur (truncated at 4 sigma) with 'nearest' borders, scikit-image's default mode."""
    return _separable(x, _gaussian_1d(sigma, int(4 * sigma + 0.5)), "edge").clamp(0, 1)


def motion_kernel(radius: float, sigma: float) -> Tensor:
    """ImageMagick's one-sided motion kernel: Gaussian weights at 0..width-1, width = 2*ceil(radius)+1."""
    t = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def motion_blur_at(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """Blur each image along its angle (degrees): out(r, c) = sum_i k_i x(r + round(i sin a), c + round(i cos a)),
    edge pixels beyond the border (ImageMagick's MotionBlurImage)."""
    n, ch, h, w = x.shape
    k = motion_kernel(radius, sigma).to(x)
    a = torch.deg2rad(angles.double())
    i = torch.arange(len(k), dtype=torch.float64)
    dr = torch.ceil(i[None] * torch.sin(a)[:, None] - 0.5).long()  # (N, width), ImageMagick's rounding
    dc = torch.ceil(i[None] * torch.cos(a)[:, None] - 0.5).long()
    rows, cols = torch.arange(h), torch.arange(w)
    flat = x.reshape(n, ch, h * w)
    out = torch.zeros_like(x)
    for j in range(len(k)):
        rr = border_index(rows[None, :] + dr[:, j : j + 1], h, "edge")  # (N, H)
        cc = border_index(cols[None, :] + dc[:, j : j + 1], w, "edge")  # (N, W)
        idx = (rr[:, :, None] * w + cc[:, None, :]).reshape(n, 1, -1).expand(-1, ch, -1).to(x.device)
        out += k[j] * flat.gather(2, idx).reshape(n, ch, h, w)
    return out


@_register("motion_blur")
def motion_blur(x: Tensor, p: tuple[float, float], gen: torch.Generator) -> Tensor:
    angles = torch.rand(len(x), generator=gen, dtype=torch.float64) * 90 - 45
    return motion_blur_at(x, p[0], p[1], angles).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# colour and digital


@_register("contrast")
def contrast(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)  # per image and channel, as the generator's axis=(0, 1)
    return ((x - means) * c + means).clamp(0, 1)


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
def brightness(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    return _hsv(x, lambda hsv: torch.cat([hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)], 1))


@_register("saturate")
def saturate(x: Tensor, p: tuple[float, float], gen: torch.Generator) -> Tensor:
    a, b = p
    return _hsv(x, lambda hsv: torch.cat([hsv[:, :1], (hsv[:, 1:2] * a + b).clamp(0, 1), hsv[:, 2:]], 1))


@_register("pixelate")
def pixelate(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(int(h * c), int(w * c)), mode="area")  # a box filter, as PIL's BOX
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


@_register("jpeg_compression")
def jpeg_compression(x: Tensor, quality: int, gen: torch.Generator) -> Tensor:
    """PIL JPEG at the benchmark's quality, image by image (no batched JPEG codec in torch)."""
    from PIL import Image

    out = torch.empty_like(x)
    arr = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i, a in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, "JPEG", quality=quality)
        dec = np.asarray(Image.open(buf)).astype(np.float32) / 255
        out[i] = torch.from_numpy(dec.reshape(a.shape)).permute(2, 0, 1)
    return out


# ---------------------------------------------------------------------------------------------------------------
# elastic


def elastic_at(x: Tensor, p: tuple[float, float, float], jitter: Tensor, noise: Tensor) -> Tensor:
    """The generators' elastic transform with its random draws given: `jitter` (N, 3, 2) in [-1, 1] moves the
    three affine anchor points (times the jitter strength), `noise` (N, 2, H, W) in [-1, 1] becomes the
    displacement field (Gaussian-smoothed with truncate=3 and SciPy 'reflect' borders, times alpha)."""
    n, _, h, w = x.shape
    side = min(h, w)
    alpha, sigma, jit = (f * side for f in p)
    # random affine through three points about the centre, applied as OpenCV's warpAffine (inverse map, bilinear,
    # REFLECT_101 borders); points are (x, y) = (column, row)
    cs, sq = torch.tensor([h // 2, w // 2], dtype=torch.float64), side // 3
    pts1 = torch.stack([cs + sq, torch.stack([cs[0] + sq, cs[1] - sq]), cs - sq])
    pts2 = pts1 + jitter.double() * jit
    src = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64)], 1)  # (3, 3)
    fwd = torch.linalg.solve(src.expand(n, -1, -1), pts2).transpose(1, 2)  # (N, 2, 3): dst = A src + b
    inv = torch.linalg.inv(fwd[:, :, :2])
    rr, cc = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    d = torch.stack([cc, rr]).reshape(2, -1)[None] - fwd[:, :, 2:]  # (N, 2, HW)
    s = inv @ d
    warped = bilinear(x, s[:, 1].reshape(n, h, w).to(x), s[:, 0].reshape(n, h, w).to(x), "reflect101")
    # smoothed random displacement field, then bilinear sampling with SciPy 'reflect' borders
    field = noise.double()
    if sigma > 0:
        field = _separable(field, _gaussian_1d(sigma, int(3 * sigma + 0.5)), "symmetric")
    field = (field * alpha).to(x)
    out = bilinear(warped, rr.to(x)[None] + field[:, 1], cc.to(x)[None] + field[:, 0], "symmetric")
    return out.clamp(0, 1)


@_register("elastic_transform")
def elastic_transform(x: Tensor, p: tuple[float, float, float], gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    jitter = torch.rand(n, 3, 2, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.rand(n, 2, h, w, generator=gen, dtype=torch.float64) * 2 - 1
    return elastic_at(x, p, jitter, noise)


# ---------------------------------------------------------------------------------------------------------------


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0, strengths: str | None = None) -> Tensor:
    """Apply a registered corruption at severity 1..5 with a seeded generator.

    `strengths` is 'cifar' or 'imagenet'; by default `strengths_for` picks it from the image size.
    """

    fn = CORRUPTIONS.get(name)
    if severity not in range(1, 6):
        raise UsageError(f"--severities: {severity} is not in 1..5")
    table = strengths or strengths_for(*x.shape[-2:])
    if table not in STRENGTHS:
        raise UsageError(f"--strengths '{table}' is not one of: {', '.join(STRENGTHS)}")
    return fn(x.float(), STRENGTHS[table][name][severity - 1], torch.Generator().manual_seed(seed))


def corrupted_split(
    split, name: str, severity: int, seed: int = 0, batch_size: int = 256, strengths: str | None = None
):
    """A copy of an in-memory `ImageSplit` whose pixels are corrupted, named `data~corruption@severity`.

    Corruptions act on the native pixels, before resizing and normalisation, in chunks of `batch_size`
    seeded `seed + offset` (so the result does not depend on the extraction's batch size). The pixels are
    computed on first use: a split whose features are already cached is never corrupted. Its identity holds
    the corruption, severity, strengths and seed, so the feature cache keeps one entry per corrupted split.
    """

    if split.images is None:
        raise DataError(f"--shift needs an in-memory data set; '{split.name}' is read from image files")
    table = strengths or strengths_for(*split.images.shape[-2:])
    corrupt(split.images[:1].float(), name, severity, seed, table)  # validate name, severity and table now
    memo: list[Tensor] = []

    def pixels() -> Tensor:
        if not memo:
            x = split.images.float() / 255.0 if split.images.dtype == torch.uint8 else split.images.float()
            chunks = range(0, len(x), batch_size)
            memo.append(torch.cat([corrupt(x[i : i + batch_size], name, severity, seed + i, table) for i in chunks]))
        return memo[0]

    return dataclasses.replace(
        split,
        name=f"{split.name}~{name}@{severity}",
        images=None,
        load=lambda idx, size: pixels()[idx],
        identity={**split.identity, "corruption": name, "severity": severity, "seed": seed, "strengths": table},
    )

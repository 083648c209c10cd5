"""Time the shift suite on the digits test split for a sample checkpoint and say where the time goes.

    python benchmarks/bench_shift.py [--checkpoint sample_checkpoints/cnn_digits.safetensors] [--severities 1,3,5]
                                     [--baseline-n 200]

Part 1, per corruption: seconds to corrupt the split (vcal's batched torch code) against seconds for the
forward pass over the corrupted split (vcal's extraction, cache off), and the metrics.
Part 2, the baseline in the same run: the generators' way, image by image in NumPy/SciPy/PIL (as
imagecorruptions and make_cifar_c.py do), on the first --baseline-n images, scaled to the split; the
ratio is baseline / vcal for the same corruption, severity and images.
Part 3: a second `vcal audit --shift` run, served from the cache (no corruption, no forward pass).
Wall-clock seconds on this machine, one run each (best of 3 for the per-corruption timings).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

import numpy as np
import torch
from _timing import best_of
from PIL import Image
from scipy import ndimage

from vcal_cli import ExtractOptions, load_checkpoint, load_split
from vcal_cli.evaluations.shift import CORRUPTIONS, STRENGTHS, corrupted_split, disk_kernel, motion_kernel


def baseline(name: str, img: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    """One image (H, W, C) in [0, 1] the way the generators do it: NumPy, SciPy and PIL, image by image."""
    if name == "gaussian_noise":
        return np.clip(img + rng.normal(size=img.shape, scale=p), 0, 1)
    if name == "shot_noise":
        return np.clip(rng.poisson(img * p) / p, 0, 1)
    if name == "impulse_noise":
        out = img.copy()
        hit = rng.random(img.shape) < p
        out[hit] = rng.random(hit.sum()) < 0.5
        return out
    if name == "gaussian_blur":
        return np.clip(ndimage.gaussian_filter(img, sigma=(p, p, 0), mode="nearest"), 0, 1)
    if name == "defocus_blur":
        k = disk_kernel(*p).numpy()
        return np.clip(
            np.stack([ndimage.correlate(img[..., c], k, mode="mirror") for c in range(img.shape[2])], -1), 0, 1
        )
    if name == "motion_blur":
        k, a = motion_kernel(*p).numpy(), np.deg2rad(rng.uniform(-45, 45))
        out = np.zeros_like(img)
        h, w = img.shape[:2]
        for i, wgt in enumerate(k):
            dr, dc = int(np.ceil(i * np.sin(a) - 0.5)), int(np.ceil(i * np.cos(a) - 0.5))
            rows, cols = np.clip(np.arange(h) + dr, 0, h - 1), np.clip(np.arange(w) + dc, 0, w - 1)
            out += wgt * img[rows][:, cols]
        return np.clip(out, 0, 1)
    if name == "contrast":
        m = img.mean(axis=(0, 1), keepdims=True)
        return np.clip((img - m) * p + m, 0, 1)
    if name in ("brightness", "saturate"):
        from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

        hsv = rgb_to_hsv(np.repeat(img, 3, 2) if img.shape[2] == 1 else img)
        if name == "brightness":
            hsv[..., 2] = np.clip(hsv[..., 2] + p, 0, 1)
        else:
            hsv[..., 1] = np.clip(hsv[..., 1] * p[0] + p[1], 0, 1)
        return np.clip(hsv_to_rgb(hsv), 0, 1)
    if name in ("pixelate", "jpeg_compression"):
        pil = Image.fromarray(
            (img[..., 0] * 255).astype(np.uint8) if img.shape[2] == 1 else (img * 255).astype(np.uint8)
        )
        if name == "pixelate":
            h, w = img.shape[:2]
            pil = pil.resize((int(w * p), int(h * p)), Image.BOX).resize((w, h), Image.BOX)
        else:
            buf = io.BytesIO()
            pil.save(buf, "JPEG", quality=p)
            pil = Image.open(buf)
        return np.asarray(pil, dtype=np.float32).reshape(img.shape) / 255
    if name == "elastic_transform":
        h = img.shape[0]
        alpha, sigma, jit = (f * h for f in p)
        c, sq = np.array([h // 2, h // 2], float), h // 3
        pts1 = np.array([c + sq, [c[0] + sq, c[1] - sq], c - sq])
        pts2 = pts1 + rng.uniform(-jit, jit, size=pts1.shape)
        m = np.linalg.lstsq(np.c_[pts1, np.ones(3)], pts2, rcond=None)[0].T
        inv = np.linalg.inv(m[:, :2])[::-1, ::-1]
        off = -(inv @ m[::-1, 2])
        warped = np.stack(
            [ndimage.affine_transform(img[..., ch], inv, off, order=1, mode="mirror") for ch in range(img.shape[2])], -1
        )
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, h)), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, h)), sigma, mode="reflect", truncate=3) * alpha
        yy, xx = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
        return np.clip(
            np.stack(
                [
                    ndimage.map_coordinates(warped[..., ch], [yy + dy, xx + dx], order=1, mode="reflect")
                    for ch in range(img.shape[2])
                ],
                -1,
            ),
            0,
            1,
        )
    raise KeyError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="sample_checkpoints/cnn_digits.safetensors")
    ap.add_argument("--severities", default="1,3,5")
    ap.add_argument("--baseline-n", type=int, default=200)
    a = ap.parse_args()
    from vcal_cli.api import load_features
    from vcal_cli.metrics import compute_metrics

    torch.set_num_threads(torch.get_num_threads())
    severities = [int(s) for s in a.severities.split(",")]
    loaded = load_checkpoint(a.checkpoint)
    split = load_split("digits", "test")
    n, shape = len(split.labels), tuple(split.images.shape[1:])
    print(
        f"{a.checkpoint} on digits:test, {n} images of {shape}, severities {severities}, "
        f"{torch.get_num_threads()} threads"
    )
    nocache = ExtractOptions.of(use_cache=False)
    load_features(loaded, split, options=nocache)  # warm-up
    t_fwd = best_of(lambda: load_features(loaded, split, options=nocache))[0]
    print(f"forward pass over the clean split (vcal extraction, no cache): {t_fwd * 1000:.1f} ms\n")
    print(
        f"{'corruption':<18} {'corrupt ms':>10} {'forward ms':>10} {'metrics ms':>10} {'baseline ms':>11} {'ratio':>6}"
    )
    tot = {"corrupt": 0.0, "forward": 0.0, "metrics": 0.0, "baseline": 0.0}
    x = split.images.float() / 255
    imgs = x[: a.baseline_n].permute(0, 2, 3, 1).double().numpy()
    for name in CORRUPTIONS.names():
        c = f = m = b = 0.0
        for s in severities:
            c += best_of(lambda: corrupted_split(split, name, s).load(None, None))[0]  # noqa: B023
            cs = corrupted_split(split, name, s)
            f += best_of(lambda: load_features(loaded, cs, options=nocache))[0]  # noqa: B023
            fs = load_features(loaded, cs, options=nocache)[1]
            m += best_of(lambda: compute_metrics(fs.labels, logits=fs.logits, n_bootstrap=0))[0]  # noqa: B023
            p, rng = STRENGTHS["cifar"][name][s - 1], np.random.default_rng(0)
            b += best_of(lambda: [baseline(name, im, p, rng) for im in imgs], 1)[0] * n / len(imgs)  # noqa: B023
        tot["corrupt"] += c
        tot["forward"] += f
        tot["metrics"] += m
        tot["baseline"] += b
        print(f"{name:<18} {c * 1000:>10.1f} {f * 1000:>10.1f} {m * 1000:>10.1f} {b * 1000:>11.1f} {b / c:>5.1f}x")
    total = tot["corrupt"] + tot["forward"] + tot["metrics"]
    print(
        f"{'all':<18} {tot['corrupt'] * 1000:>10.1f} {tot['forward'] * 1000:>10.1f} {tot['metrics'] * 1000:>10.1f} "
        f"{tot['baseline'] * 1000:>11.1f} {tot['baseline'] / tot['corrupt']:>5.1f}x"
    )
    print(
        f"\nshare of the suite: corruption {tot['corrupt'] / total:.0%}, forward pass {tot['forward'] / total:.0%}, "
        f"metrics {tot['metrics'] / total:.0%} "
        f"(total {total:.2f} s for {len(CORRUPTIONS.names()) * len(severities)} splits)"
    )
    from vcal_cli.api import AuditSettings, audit
    from vcal_cli.evaluations.robustness import RobustnessOptions

    with tempfile.TemporaryDirectory() as d:
        o = ExtractOptions.of(cache_dir=d)
        r = RobustnessOptions(shift=tuple(CORRUPTIONS.names()), severities=tuple(severities))
        t = time.perf_counter()
        audit(loaded, data="digits", options=o, settings=AuditSettings(robustness=r, n_bootstrap=0))
        cold = time.perf_counter() - t
        t = time.perf_counter()
        audit(loaded, data="digits", options=o, settings=AuditSettings(robustness=r, n_bootstrap=0))
        warm = time.perf_counter() - t
    print(f"audit --shift end to end: {cold:.2f} s cold, {warm:.2f} s from the cache ({cold / warm:.1f}x)")


if __name__ == "__main__":
    main()

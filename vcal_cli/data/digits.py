"""scikit-learn's handwritten digits: 1,797 8x8 grey images of 0-9, shipped inside scikit-learn."""

from __future__ import annotations

from pathlib import Path

import torch

from vcal_cli.data.base import SOURCES, ImageSplit
from vcal_cli.data.splits import pool_split


@SOURCES.register("digits", "scikit-learn's 8x8 digits, built in (no download); 540 test images")
def load_digits_split(spec: str, split: str, root: Path | None = None) -> ImageSplit:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images).float().div_(16.0)[:, None]  # (1797, 1, 8, 8), pixel values 0..16
    labels = torch.from_numpy(d.target).long()
    idx = pool_split(len(labels), split)
    return ImageSplit(
        name="digits",
        split=split,
        labels=labels[idx],
        classes=[str(c) for c in d.target_names],
        native_size=(1, 8, 8),
        identity={"source": "sklearn.load_digits", "n": len(labels)},
        images=images[idx],
    )

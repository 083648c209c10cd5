"""`ImageSplit`: one split of one data set, as images in [0, 1] or uint8, and its labels."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcal_cli._registry import Registry
from vcal_cli.errors import DataError


@dataclass(kw_only=True)
class ImageSplit:
    """Images (N, C, H, W) as uint8 or float in [0, 1], labels (N,), and the class names.

    In-memory sets hold `images`; sets read from disk (image folders) give `load(indices, size)`
    instead, which decodes and resizes a batch.
    """

    name: str
    split: str
    labels: Tensor  # (N,) int64
    classes: list[str]
    native_size: tuple[int, int, int]  # (C, H, W) before preprocessing
    identity: dict[str, Any]  # what makes this split unique, for the feature-cache key
    images: Tensor | None = None  # (N, C, H, W)
    load: Callable[[Tensor, tuple[int, int]], Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.labels) == 0:
            raise DataError(f"data set '{self.name}' split '{self.split}' is empty", hint="check the files or --split")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: Tensor, split: str, identity: dict[str, Any]) -> ImageSplit:
        """The rows `idx` of this split, renamed `split`, with `identity` added to its own."""
        loader = self.load
        return ImageSplit(
            name=self.name,
            split=split,
            labels=self.labels[idx],
            classes=self.classes,
            native_size=self.native_size,
            identity={**self.identity, **identity},
            images=self.images[idx] if self.images is not None else None,
            load=(lambda rows, size: loader(idx[rows], size)) if loader is not None else None,  # type: ignore[misc]
        )

    @staticmethod
    def concat(a: ImageSplit, b: ImageSplit, split: str, identity: dict[str, Any]) -> ImageSplit:
        """`a`'s rows then `b`'s, as one split (both of the same data set and native size)."""
        ident = {"parts": [a.identity, b.identity], **identity}
        labels = torch.cat([a.labels, b.labels])
        joined = functools.partial(dataclasses.replace, a, split=split, labels=labels, identity=ident)
        if a.images is not None and b.images is not None:
            return joined(images=torch.cat([a.images, b.images]), load=None)
        n_a = len(a)

        def load(rows: Tensor, size: tuple[int, int]) -> Tensor:
            out = [
                s.images[r] if s.images is not None else s.load(r, size)  # type: ignore[misc]
                for s, r in ((a, rows[rows < n_a]), (b, rows[rows >= n_a] - n_a))
                if len(r)
            ]
            return torch.cat(out)

        return joined(images=None, load=load)

    def batches(
        self, batch_size: int, size: tuple[int, int], workers: int = 0, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (images, labels) of rows `start:stop` in order; `size` is the (H, W) disk-backed sets decode to.

        In-memory sets yield views (no copy). With `workers > 0`, disk-backed sets decode up to `workers`
        batches ahead in threads.
        """
        stop = len(self) if stop is None else min(stop, len(self))
        bounds = [(s, min(s + batch_size, stop)) for s in range(start, stop, batch_size)]
        if self.images is not None:
            for s, e in bounds:
                yield self.images[s:e], self.labels[s:e]
            return
        assert self.load is not None  # an ImageSplit holds images or a loader
        ranges = [torch.arange(s, e) for s, e in bounds]
        if workers <= 0:
            for idx in ranges:
                yield self.load(idx, size), self.labels[idx]
            return
        with ThreadPoolExecutor(workers) as pool:
            for idx, imgs in zip(ranges, pool.map(lambda i: self.load(i, size), ranges), strict=True):
                yield imgs, self.labels[idx]


Source = Callable[..., ImageSplit]  # (spec, split, root) -> ImageSplit
SOURCES: Registry[Source] = Registry("data set")


def to_nchw(x: Tensor, where: str) -> Tensor:
    """Accept (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}; floats must lie in [0, 1] or [0, 255]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must be (N,H,W), (N,C,H,W) or (N,H,W,C), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise DataError(f"{where}: images need 1 or 3 channels, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{where}: images must be uint8 or float pixels, got {x.dtype}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: images contain NaN or inf")
    if x.numel() and (x.min() < 0 or x.max() > 255.0):
        raise DataError(
            f"{where}: pixels must lie in [0, 1] or [0, 255], found {float(x.min()):.3g}..{float(x.max()):.3g}",
            hint="undo the normalisation (vcal normalises with the model's mean and std itself)",
        )
    if x.numel() and x.max() > 1.0:
        x = x / 255.0
    return x.contiguous()


def label_tensor(values: Any, where: str) -> Tensor:
    """Class indices from an array: integers, or floats that are whole numbers; anything else is one line."""
    a = np.asarray(values)
    if a.dtype.kind in "iu" or a.dtype == np.bool_:
        return torch.from_numpy(a.astype(np.int64)).flatten()
    if a.dtype.kind == "f" and np.isfinite(a).all() and (a == np.round(a)).all():
        return torch.from_numpy(a.astype(np.int64)).flatten()
    shown = a.dtype.name if a.dtype.kind in "USOV" else "numbers that are not whole"
    raise DataError(f"{where}: labels must be integer class indices, got {shown}")


def check_labels(labels: Tensor, num_classes: int, where: str) -> Tensor:
    labels = labels.long().flatten()
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return labels


def resolve_root(root: str | Path | None) -> Path:
    """--data-root, else $VCAL_DATA, else ./data."""
    return Path(root or os.environ.get("VCAL_DATA") or "data").expanduser()

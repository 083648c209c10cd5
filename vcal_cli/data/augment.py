"""Augmented views of a split, for training heads on features the backbone has not memorised.

The two-stage papers train stage 2 on augmented images (random crop with 4-pixel padding and horizontal flip
for CIFAR; Jordahn & Olmos, `00_train_models.py`), not on the clean training images a network trained far
past fitting has memorised. A view here is the whole split with every image shifted by a random offset of up
to 1/8 of its side (zero padding, then a crop of the native size: CIFAR's 4 pixels at 32) and, with
`crop+flip`, half of the images mirrored left to right. Offsets and flips are drawn once per view from
(seed, view), so a view is the same every run and its features are cached like any split's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from vcal_cli.data.base import ImageSplit
from vcal_cli.errors import UsageError

AUGMENTS = {
    "crop": "random shift by up to 1/8 of the side (zero padding, native-size crop)",
    "crop+flip": "the same, and half of the images mirrored left to right (not for digits or text)",
}


def shift_and_flip(images: Tensor, offsets: Tensor, flips: Tensor, pad: int) -> Tensor:
    """Crop each image (B, C, H, W) from its zero-padded copy at `offsets` (B, 2) in [0, 2 pad], then mirror
    the rows where `flips` (B,) is true. Offset (pad, pad) with no flip gives the image back."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def check_augment(policy: str) -> None:
    """A `UsageError` naming the choices unless `policy` is one of `AUGMENTS`."""
    if policy not in AUGMENTS:
        raise UsageError(f"--augment '{policy}' is not a policy; choose one of: {', '.join(AUGMENTS)}")


def augmented(split: ImageSplit, policy: str, view: int, seed: int = 0) -> ImageSplit:
    """View `view` of `split` under `policy` (one of `AUGMENTS`): same labels, its own cache identity."""
    check_augment(policy)
    _, h, w = split.native_size
    pad = max(1, round(min(h, w) / 8))
    g = torch.Generator().manual_seed(seed * 1_000_003 + view)
    offsets = torch.randint(0, 2 * pad + 1, (len(split), 2), generator=g)
    flips = (torch.rand(len(split), generator=g) < 0.5) & (policy == "crop+flip")
    identity: dict[str, Any] = {**split.identity, "augment": policy, "view": view, "augment_seed": seed}
    if split.images is not None:
        images = torch.cat(
            [
                shift_and_flip(split.images[a : a + 4096], offsets[a : a + 4096], flips[a : a + 4096], pad)
                for a in range(0, len(split), 4096)
            ]
        )
        return dataclasses.replace(split, identity=identity, images=images, load=None)
    loader = split.load
    assert loader is not None  # an ImageSplit holds images or a loader

    def load(rows: Tensor, size: tuple[int, int]) -> Tensor:
        batch = loader(rows, size)
        return shift_and_flip(batch, offsets[rows], flips[rows], max(1, round(min(size) / 8)))

    return dataclasses.replace(split, identity=identity, images=None, load=load)

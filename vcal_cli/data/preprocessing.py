"""How images become model inputs: resize, match channels, normalise.

Images enter vcal as pixels in [0, 1], shape (N, C, H, W). `Preprocessing.to_model_input` resizes
them to the checkpoint's input size, converts grey <-> RGB when the channel counts differ, and
normalises with the checkpoint's mean and std. The pixel-space step and the normalisation are kept
apart so that attacks and corruptions can work on pixels.

Resolution order (`resolve_preprocessing`): flags the user gave explicitly, then the checkpoint's own
metadata, then timm's pretrained config for the architecture, then the data set's native size with
mean 0 and std 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vcal_cli.errors import UsageError


@dataclass(frozen=True)
class Preprocessing:
    """Model input geometry and normalisation."""

    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = field(default="default", compare=False)  # flags | checkpoint | timm | default

    def __post_init__(self) -> None:
        c = self.input_size[0]
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise UsageError(f"input size {self.input_size} must be three positive integers C,H,W")
        if len(self.mean) != c or len(self.std) != c:
            raise UsageError(f"mean {self.mean} and std {self.std} need {c} values, one per input channel")
        if any(s <= 0 for s in self.std):
            raise UsageError(f"std {self.std} must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "checkpoint") -> Preprocessing:
        return cls(
            tuple(int(v) for v in d["input_size"]),
            tuple(float(v) for v in d["mean"]),
            tuple(float(v) for v in d["std"]),
            source,
        )  # type: ignore[arg-type]

    def to_pixels(self, images: Tensor) -> Tensor:
        """uint8 or [0, 1] float images (N, C, H, W) -> float pixels at the model's size and channels."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        c, h, w = self.input_size
        if x.shape[1] != c:
            if x.shape[1] == 1:
                x = x.expand(-1, c, -1, -1)
            elif c == 1 and x.shape[1] == 3:  # ITU-R 601 luma, as PIL's convert("L")
                x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                raise UsageError(f"images have {x.shape[1]} channels but the model takes {c}; set --input-size")
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return x

    def normalize(self, pixels: Tensor) -> Tensor:
        mean = pixels.new_tensor(self.mean).view(1, -1, 1, 1)
        std = pixels.new_tensor(self.std).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def to_model_input(self, images: Tensor) -> Tensor:
        return self.normalize(self.to_pixels(images))


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} '{text}' must be comma-separated numbers, e.g. 0.485,0.456,0.406") from None


def parse_input_size(text: str) -> tuple[int, int, int]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 1:
        raise UsageError(f"--input-size '{text}' must be C,H,W as three positive integers, e.g. 3,224,224")
    return vals  # type: ignore[return-value]


def resolve_preprocessing(
    *,
    flags: dict[str, Any] | None = None,
    checkpoint: Preprocessing | None = None,
    timm_cfg: dict[str, Any] | None = None,
    model_in_chans: int | None = None,
    native_size: tuple[int, int, int],
) -> Preprocessing:
    """Pick preprocessing: explicit flags > checkpoint metadata > timm pretrained cfg > native size.

    `flags` may hold any of input_size, mean, std; unset entries fall through to the next source.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    if checkpoint is not None:
        base, source = checkpoint.to_dict(), "checkpoint"
    elif timm_cfg and timm_cfg.get("input_size") and timm_cfg.get("mean") and timm_cfg.get("std"):
        base, source = {k: list(timm_cfg[k]) for k in ("input_size", "mean", "std")}, "timm"
        c = model_in_chans or base["input_size"][0]
        if c != len(base["mean"]):  # a timm arch built with in_chans != 3: average the RGB statistics
            base["mean"] = [sum(base["mean"]) / len(base["mean"])] * c
            base["std"] = [sum(base["std"]) / len(base["std"])] * c
            base["input_size"] = [c, *base["input_size"][1:]]
    else:
        c = model_in_chans or native_size[0]
        base, source = {"input_size": [c, *native_size[1:]], "mean": [0.0] * c, "std": [1.0] * c}, "default"
    if flags:
        source = "flags" if set(flags) >= {"input_size", "mean", "std"} else f"{source}+flags"
        base.update({k: list(v) for k, v in flags.items()})
        c = base["input_size"][0]
        for k in ("mean", "std"):  # a single value given for a multi-channel model applies to every channel
            if len(base[k]) == 1 and c > 1:
                base[k] = base[k] * c
    return Preprocessing.from_dict(base, source)

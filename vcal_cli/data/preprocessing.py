"""How images become model inputs: resize, match channels, normalise.

Images enter vcal as pixels in [0, 1], shape (N, C, H, W). `Preprocessing.to_model_input` resizes
them to the checkpoint's input size, converts grey <-> RGB when the channel counts differ, and
normalises with the checkpoint's mean and std. The pixel-space step and the normalisation are kept
apart so that attacks and corruptions can work on pixels.

Resolution order (`resolve_preprocessing`), field by field: flags the user gave explicitly, then vcal's
own metadata in the checkpoint, then what the checkpoint says about its training (`Hints`: timm `args`,
Lightning `hyper_parameters`, a `config.json` beside the weights), then, for fields still unset when one
of those spoke, timm's config for the architecture. When none of them says anything the caller probes the
candidates (`probe_candidates`) on a few val images instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vcal_cli.errors import UsageError

_MODES = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Model input geometry and normalisation."""

    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = field(default="default", compare=False)  # where it came from, in words
    interpolation: str = "bilinear"  # bilinear | bicubic | nearest
    crop_pct: float = 1.0  # timm's eval transform: resize the short side to size / crop_pct, centre-crop
    probe: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # candidates tried, when probed

    def __post_init__(self) -> None:
        c = self.input_size[0]
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise UsageError(f"input size {self.input_size} must be three positive integers C,H,W")
        if len(self.mean) != c or len(self.std) != c:
            raise UsageError(f"mean {self.mean} and std {self.std} need {c} values, one per input channel")
        if any(s <= 0 for s in self.std):
            raise UsageError(f"std {self.std} must be positive")
        if self.interpolation not in _MODES:
            raise UsageError(f"interpolation '{self.interpolation}' is not one of: {', '.join(_MODES)}")
        if not 0 < self.crop_pct <= 1:
            raise UsageError(f"crop_pct {self.crop_pct} must lie in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std)}
        if self.interpolation != "bilinear":  # only when set: equal settings keep equal cache keys across versions
            d["interpolation"] = self.interpolation
        if self.crop_pct != 1.0:
            d["crop_pct"] = self.crop_pct
        return d

    def describe(self) -> str:
        """One line: `1x28x28, mean 0.286, std 0.353 (timm train.py args)`."""
        f = lambda v: ",".join(f"{x:.3g}" for x in v)  # noqa: E731
        extra = (f", {self.interpolation}" if self.interpolation != "bilinear" else "") + (
            f", crop {self.crop_pct:g}" if self.crop_pct != 1.0 else ""
        )
        size = "x".join(str(v) for v in self.input_size)
        return f"{size}, mean {f(self.mean)}, std {f(self.std)}{extra} ({self.source})"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "checkpoint") -> Preprocessing:
        interp = str(d.get("interpolation") or "bilinear")
        return cls(
            input_size=tuple(int(v) for v in d["input_size"]),  # type: ignore[arg-type]
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            source=source,
            interpolation=interp if interp in _MODES else "bilinear",
            crop_pct=float(d.get("crop_pct") or 1.0),
        )

    def to_pixels(self, images: Tensor) -> Tensor:
        """uint8 or [0, 1] float images (N, C, H, W) -> float pixels at the model's size and channels."""
        eight_bit = images.dtype == torch.uint8
        x = images.float().div_(255.0) if eight_bit else images.float()
        c, h, w = self.input_size
        if x.shape[1] != c:
            if x.shape[1] == 1:
                x = x.expand(-1, c, -1, -1)
            elif c == 1 and x.shape[1] == 3:  # ITU-R 601 luma, as PIL's convert("L")
                x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                raise UsageError(f"images have {x.shape[1]} channels but the model takes {c}; set --input-size")
        if self.crop_pct < 1.0:  # timm's eval transform: the shorter side to size / crop_pct, then the centre crop
            # torchvision's Resize(int) and CenterCrop arithmetic (what timm and torchvision's weights evaluate with):
            # the short side to floor(size / crop_pct), the long side truncated in proportion; the crop offset rounded
            side = math.floor(max(h, w) / self.crop_pct + 1e-6)
            ih, iw = x.shape[-2:]
            x = self._resize(x, (side, int(side * iw / ih)) if ih <= iw else (int(side * ih / iw), side), eight_bit)
            top, left = int(round((x.shape[-2] - h) / 2.0)), int(round((x.shape[-1] - w) / 2.0))
            x = x[..., top : top + h, left : left + w]
        if x.shape[-2:] != (h, w):
            x = self._resize(x, (h, w), eight_bit)
        return x

    def _resize(self, x: Tensor, size: tuple[int, int], eight_bit: bool = False) -> Tensor:
        """Resize as PIL does (what timm's and torchvision's eval transforms run on decoded images): its bilinear and
        bicubic filters (antialiased `F.interpolate` uses the same kernels), and for 8-bit images its two passes, the
        width first, each rounded half up and clipped to 8 bits. One float pass differed from PIL by up to 8 grey
        levels on 14-22% of the pixels of sharp-edged images (PIL clips the first pass's overshoot); the two 8-bit
        passes equal it, or differ by one level on at most 0.09% (`tests/test_real_trainers.py`)."""
        if self.interpolation == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        if not eight_bit:
            return self._pass(x, size).clamp_(0, 1)
        if x.shape[-1] != size[1]:
            x = _to_8_bits(self._pass(x, (x.shape[-2], size[1])))
        if x.shape[-2] != size[0]:
            x = _to_8_bits(self._pass(x, size))
        return x

    def _pass(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)

    def normalize(self, pixels: Tensor) -> Tensor:
        mean = pixels.new_tensor(self.mean).view(1, -1, 1, 1)
        std = pixels.new_tensor(self.std).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def to_model_input(self, images: Tensor) -> Tensor:
        return self.normalize(self.to_pixels(images))


def _to_8_bits(x: Tensor) -> Tensor:
    """Pixels rounded and clipped to the 8-bit grid, as PIL stores each pass."""
    return x.mul_(255.0).add_(0.5).floor_().clamp_(0, 255).div_(255.0)  # half up, as PIL rounds


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
        raise UsageError(f"--input-size '{text[:40]}' must be C,H,W as three positive integers, e.g. 3,224,224")
    if vals[0] > MAX_CHANNELS or max(vals[1:]) > MAX_SIDE:
        raise UsageError(f"--input-size '{text[:40]}': at most {MAX_CHANNELS} channels and sides of {MAX_SIDE} pixels")
    return vals  # type: ignore[return-value]


MAX_CHANNELS, MAX_SIDE = 16, 4096  # the largest model input vcal accepts (flags and checkpoint metadata alike)


# Pixel statistics of the known data sets' train parts, the "data set's own" mean and std of the probe.
DATA_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


def _timm_base(timm_cfg: dict[str, Any] | None, c: int | None) -> dict[str, Any] | None:
    """timm's pretrained config as preprocessing fields, its RGB statistics averaged for other channel counts."""
    if not (timm_cfg and timm_cfg.get("input_size") and timm_cfg.get("mean") and timm_cfg.get("std")):
        return None
    base: dict[str, Any] = {k: list(timm_cfg[k]) for k in ("input_size", "mean", "std")}
    c = c or base["input_size"][0]
    if c != len(base["mean"]):  # a timm arch built with in_chans != 3: average the RGB statistics
        base["mean"] = [sum(base["mean"]) / len(base["mean"])] * c
        base["std"] = [sum(base["std"]) / len(base["std"])] * c
        base["input_size"] = [c, *base["input_size"][1:]]
    if timm_cfg.get("interpolation") in _MODES:
        base["interpolation"] = timm_cfg["interpolation"]
    if isinstance(timm_cfg.get("crop_pct"), int | float):
        base["crop_pct"] = float(timm_cfg["crop_pct"])
    return base


def _spread(d: dict[str, Any]) -> dict[str, Any]:
    """A single mean or std value given for a multi-channel model applies to every channel."""
    c = d["input_size"][0]
    for k in ("mean", "std"):
        if len(d[k]) == 1 and c > 1:
            d[k] = list(d[k]) * c
    return d


def resolve_preprocessing(
    *,
    flags: dict[str, Any] | None = None,
    checkpoint: Preprocessing | None = None,
    hints: Any = None,
    timm_cfg: dict[str, Any] | None = None,
    model_in_chans: int | None = None,
    native_size: tuple[int, int, int],
) -> Preprocessing | None:
    """Preprocessing from what was said about it, field by field; None when nothing was (probe then).

    Order: explicit `flags` (input_size, mean, std) > vcal's `checkpoint` metadata > the checkpoint's
    `hints` about its training (a `vcal_cli.checkpoints.hints.Hints`) > timm's config for the arch > the
    data's native size with mean 0, std 1.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    said: dict[str, Any] = {}
    if hints is not None:
        said = {k: getattr(hints, k) for k in ("input_size", "mean", "std", "interpolation", "crop_pct")}
        said = {k: v for k, v in said.items() if v is not None}
    if not flags and checkpoint is None and not any(k in said for k in ("input_size", "mean", "std")):
        return None
    c = model_in_chans or native_size[0]
    origin: dict[str, str] = {}  # field -> where its value came from, named in the preprocessing line
    if checkpoint is not None:
        base = checkpoint.to_dict()
        said_by = checkpoint.source if checkpoint.source.startswith("torchvision") else "checkpoint"
        origin = dict.fromkeys(FIELDS, said_by)
    else:
        timm = _timm_base(timm_cfg, model_in_chans)
        base = timm or {"input_size": [c, *native_size[1:]], "mean": [0.0] * c, "std": [1.0] * c}
        if timm:
            origin = dict.fromkeys(FIELDS, f"timm's {(timm_cfg or {}).get('architecture', 'arch')} config")
        else:
            origin = {"input_size": "the data's native size", "mean": "mean 0, std 1", "std": "mean 0, std 1"}
        if said:
            if "input_size" not in said and not timm:  # the data's own size, as the model was trained on it
                base["input_size"] = [c, *native_size[1:]]
            if timm and any(src.startswith(OTHER_TRAINERS) for src in hints.sources):
                # a trainer other than timm's (Lightning, plain `args`) that names its size and statistics but not
                # a resize fed the images as they are: timm's eval crop and interpolation do not apply (timm's own
                # train.py and a timm hub config.json do evaluate with them, so they keep them)
                for k in ("interpolation", "crop_pct"):
                    base.pop(k, None)
                    origin.pop(k, None)
            base.update({k: list(v) if isinstance(v, tuple) else v for k, v in said.items()})
            named = " and ".join(hints.sources) if hints.sources else "the checkpoint"
            origin.update(dict.fromkeys(said, named))
    if flags:
        base.update({k: list(v) for k, v in flags.items()})
        origin.update(dict.fromkeys(flags, "flags"))
    source = describe_origin(origin, base)
    return Preprocessing.from_dict(_spread(base), source)


FIELDS = ("input_size", "mean", "std", "interpolation", "crop_pct")
OTHER_TRAINERS = ("Lightning", "checkpoint args")  # Hints sources of trainers that do not resize like timm's eval
_SHORT = {"input_size": "size", "mean": "mean", "std": "std", "interpolation": "interpolation", "crop_pct": "crop"}


def describe_origin(origin: dict[str, str], values: dict[str, Any]) -> str:
    """Where each field came from, grouped: 'size, mean from timm train.py args; std from timm's resnet18 config'.
    One source for every field is named alone ('flags' when they all came from flags)."""
    fields = [f for f in FIELDS if f in values and f in origin]
    where = [origin[f] for f in fields]
    if len(set(where)) == 1:
        return where[0]
    groups: dict[str, list[str]] = {}
    for f in fields:
        groups.setdefault(origin[f], []).append(_SHORT[f])
    return "; ".join(f"{', '.join(names)} from {src}" for src, names in groups.items())


def probe_candidates(
    timm_cfg: dict[str, Any] | None, model_in_chans: int | None, native_size: tuple[int, int, int], stats: Any
) -> list[Preprocessing]:
    """What a model with no word on its preprocessing may have been trained with, in order of preference:
    the data's native size with the data set's own mean and std, timm's config for the arch, native size with
    mean 0 and std 1. `stats` is (mean, std) of the data set."""
    c = model_in_chans or native_size[0]
    native = [c, *native_size[1:]]
    mean, std = stats
    if len(mean) != c:
        mean, std = [sum(mean) / len(mean)] * c, [sum(std) / len(std)] * c
    out = [Preprocessing.from_dict({"input_size": native, "mean": list(mean), "std": list(std)}, "native, data stats")]
    timm = _timm_base(timm_cfg, model_in_chans)
    if timm:
        arch = (timm_cfg or {}).get("architecture", "arch")
        out.append(Preprocessing.from_dict(timm, f"timm's {arch} config"))
    out.append(
        Preprocessing.from_dict({"input_size": native, "mean": [0.0] * c, "std": [1.0] * c}, "native, mean 0, std 1")
    )
    return out


def torchvision_weights(name: str, in_chans: int | None = None) -> tuple[Preprocessing, list[str]]:
    """A torchvision weights enum's eval transforms and categories (`ResNet50_Weights.IMAGENET1K_V2`, or
    `resnet50.IMAGENET1K_V2`), from the metadata torchvision ships: nothing is downloaded. Its transform resizes the
    shorter side to `resize_size`, then centre-crops `crop_size`: here crop_pct = crop / resize."""
    import torchvision

    try:
        enum, _, member = name.partition(".")
        if enum.islower():  # a model's name: its weights enum
            weights = torchvision.models.get_model_weights(enum)[member]
        else:
            weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise UsageError(
            f"--weights '{name}' is not a torchvision weights name",
            hint="e.g. ResNet50_Weights.IMAGENET1K_V2 (torchvision.models.list_models() names the models)",
        ) from e
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0]) if t.resize_size else int(t.crop_size[0])
    mode = str(getattr(t.interpolation, "value", t.interpolation)).lower()
    c = in_chans or 3
    mean, std = list(t.mean), list(t.std)
    if c != len(mean):  # a grey stem on an RGB recipe: the channel averages, as timm does
        mean, std = [sum(mean) / len(mean)] * c, [sum(std) / len(std)] * c
    prep = Preprocessing(
        input_size=(c, crop, crop),
        mean=tuple(mean),
        std=tuple(std),
        source=f"torchvision {name}",
        interpolation=mode if mode in _MODES else "bilinear",
        crop_pct=min(1.0, crop / resize),
    )
    return prep, list(weights.meta.get("categories") or [])

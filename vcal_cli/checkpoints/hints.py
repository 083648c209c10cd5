"""What a checkpoint says about its own training: arch, classes and preprocessing, read from what trainers write.

- timm's `train.py`: `args`, an `argparse.Namespace` (`model`, `num_classes`, `in_chans`, `input_size` or
  `img_size`, `mean`, `std`, `interpolation`, `crop_pct`);
- torchvision's reference `train.py` (`references/classification`): `args` with `val_resize_size`, `val_crop_size`
  and `interpolation`; its `model` is a torchvision name, and the eval preset normalises with ImageNet's mean and std
  (the preset's defaults: the script has no flag for them);
- Lightning: `hyper_parameters` (the module's `save_hyperparameters()`; the same keys, plus `arch`,
  `model_name`, `image_size`, `num_labels`);
- a file beside the weights: timm's hub `config.json` (`architecture`, `num_classes`, `label_names`,
  `pretrained_cfg`), a transformers `config.json` (`id2label`, and for its timm wrapper `architecture`) and
  `preprocessor_config.json` (`image_mean`, `image_std`, `size`, `crop_size`).

Nothing here guesses: a field the source does not state stays None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from vcal_cli.errors import CheckpointError


@dataclass(frozen=True, kw_only=True)
class Hints:
    """Fields a checkpoint states about itself; `sources` says where each group was read."""

    sources: tuple[str, ...] = ()
    arch: str | None = None
    num_classes: int | None = None
    in_chans: int | None = None
    class_names: tuple[str, ...] | None = None
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None

    @property
    def says_preprocessing(self) -> bool:
        return any(v is not None for v in (self.input_size, self.mean, self.std))

    def merge(self, other: Hints) -> Hints:
        """Fields of `self` first, `other` filling the gaps."""
        new = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        took = False
        for k, v in new.items():
            if v is None and getattr(other, k) is not None:
                new[k], took = getattr(other, k), True
        return Hints(sources=self.sources + (other.sources if took else ()), **new)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if v is not None and v != ()}


def _floats(v: Any) -> tuple[float, ...] | None:
    if v is None:
        return None
    if isinstance(v, int | float):
        return (float(v),)
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    return out or None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def _size(input_size: Any, img_size: Any, in_chans: int | None) -> tuple[int, int, int] | None:
    """(C, H, W) from timm's `input_size` [C, H, W], or `img_size` (an int or [H, W]) with `in_chans`."""
    try:
        if input_size is not None and len(input_size) == 3:
            return (int(input_size[0]), int(input_size[1]), int(input_size[2]))
        if img_size is not None:
            hw = (
                (int(img_size), int(img_size)) if isinstance(img_size, int | float) else tuple(int(v) for v in img_size)
            )
            if len(hw) == 2:
                return (in_chans or 3, hw[0], hw[1])
    except (TypeError, ValueError):
        return None
    return None


def from_mapping(d: Mapping[str, Any], source: str) -> Hints:
    """The timm `args` / Lightning `hyper_parameters` vocabulary, from any mapping."""
    g = d.get
    in_chans = _int(g("in_chans") or g("num_channels") or g("in_channels"))
    arch = g("model") or g("arch") or g("model_name") or g("architecture") or g("backbone")
    num_classes = _int(g("num_classes") or g("num_labels") or g("n_classes"))
    size = _size(g("input_size"), g("img_size") or g("image_size"), in_chans)
    names = g("class_names") or g("label_names") or g("classes")
    h = Hints(
        sources=(source,),
        arch=arch if isinstance(arch, str) and arch else None,
        num_classes=num_classes,
        in_chans=in_chans if in_chans else (size[0] if size else None),
        class_names=tuple(str(n) for n in names) if isinstance(names, list | tuple) and names else None,
        input_size=size,
        mean=_floats(g("mean")),
        std=_floats(g("std")),
        interpolation=g("interpolation") if isinstance(g("interpolation"), str) and g("interpolation") else None,
        crop_pct=float(g("crop_pct")) if isinstance(g("crop_pct"), int | float) else None,
    )
    return Hints() if all(getattr(h, f.name) is None for f in fields(h) if f.name != "sources") else h


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's eval preset defaults


def _torchvision_ref(args: Mapping[str, Any]) -> bool:
    return "val_resize_size" in args and "val_crop_size" in args


def from_torchvision_reference(args: Mapping[str, Any]) -> Hints:
    """torchvision's `references/classification/train.py` args: its eval preset resizes the shorter side to
    `val_resize_size`, centre-crops `val_crop_size` and normalises with ImageNet's statistics."""
    resize, crop = _int(args.get("val_resize_size")), _int(args.get("val_crop_size"))
    model = args.get("model")
    interp = args.get("interpolation")
    return Hints(
        sources=("torchvision reference train.py args",),
        arch=f"torchvision:{model}" if isinstance(model, str) and model else None,
        num_classes=None,
        in_chans=None,
        class_names=None,
        input_size=(3, crop, crop) if crop else None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation=interp if isinstance(interp, str) and interp else "bilinear",
        crop_pct=crop / resize if crop and resize else None,
    )


def from_checkpoint_dict(obj: Mapping[str, Any]) -> Hints:
    """Hints from a trainer's checkpoint dict: timm `args` (Namespace), Lightning `hyper_parameters`."""
    hints = Hints()
    args = obj.get("args")
    if (
        args is not None
        and hasattr(args, "__dict__")
        and not isinstance(args, Mapping)
        and _torchvision_ref(vars(args))
    ):
        hints = hints.merge(from_torchvision_reference(vars(args)))
    elif args is not None and hasattr(args, "__dict__") and not isinstance(args, Mapping):
        hints = hints.merge(from_mapping(vars(args), "timm train.py args"))
    elif isinstance(args, Mapping):
        hints = hints.merge(from_mapping(args, "checkpoint args"))
    hp = obj.get("hyper_parameters") or obj.get("hparams")
    if isinstance(hp, Mapping):
        hints = hints.merge(from_mapping(hp, "Lightning hyper_parameters"))
    dm = obj.get("datamodule_hyper_parameters")  # a LightningDataModule's save_hyperparameters(): mean, std, size
    if isinstance(dm, Mapping):  # its image size takes the model's channels when the datamodule does not say them
        dm = {**dm, "in_chans": dm.get("in_chans") or dm.get("num_channels") or hints.in_chans}
        hints = hints.merge(from_mapping(dm, "Lightning datamodule_hyper_parameters"))
    if hints.arch is None and isinstance(obj.get("arch"), str):  # timm train.py also stores arch at the top
        hints = hints.merge(Hints(sources=("timm train.py arch",), arch=obj["arch"]))
    return hints


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"'{path}' beside the weights is not readable JSON ({e})", hint="fix or remove it"
        ) from None
    if not isinstance(d, dict):
        raise CheckpointError(f"'{path}' beside the weights is not a JSON object", hint="fix or remove it")
    return d


def from_config_json(path: Path) -> Hints:
    """timm's hub config.json, or a transformers config.json (id2label; timm_wrapper's `architecture`)."""
    d = _read_json(path)
    pcfg = d.get("pretrained_cfg") if isinstance(d.get("pretrained_cfg"), dict) else {}
    h = from_mapping({**pcfg, **{k: v for k, v in d.items() if k != "pretrained_cfg"}}, path.name)
    id2label = d.get("id2label")
    if isinstance(id2label, dict) and h.class_names is None:
        try:
            names = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
            h = replace(h, class_names=names, num_classes=h.num_classes or len(names), sources=(path.name,))
        except (TypeError, ValueError):
            pass
    return h


def _edge(size: Any) -> Any:
    """An image processor's `size` / `crop_size` as an img_size: [h, w], or the shortest edge."""
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return [size["height"], size["width"]]
        return size.get("shortest_edge")
    return size if isinstance(size, int | list) else None


def from_preprocessor_config(path: Path, in_chans: int | None) -> Hints:
    """transformers' preprocessor_config.json: image_mean, image_std, the resize and the centre crop, resample.

    Two crop conventions map onto timm's (resize the short side to size / crop_pct, centre-crop size): ViT/DeiT-style
    processors resize to `size` then crop `crop_size` (`do_center_crop`), so crop_pct = crop / size; ConvNeXt-style
    ones keep `crop_pct` and, below a shortest edge of 384, resize to shortest_edge / crop_pct and crop shortest_edge.
    """
    d = _read_json(path)
    size, crop = _edge(d.get("size")), _edge(d.get("crop_size"))
    hw, crop_pct = size, None
    if d.get("do_center_crop") and crop is not None:
        hw = crop
        first = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731
        if isinstance(first(size), int) and first(size) > 0:
            crop_pct = min(1.0, first(crop) / first(size))
    elif isinstance(d.get("crop_pct"), int | float) and isinstance(size, int) and size < 384:
        crop_pct = float(d["crop_pct"])
    mean = _floats(d.get("image_mean"))
    resample = d.get("resample")
    return from_mapping(
        {
            "img_size": hw,
            "mean": mean,
            "std": d.get("image_std"),
            "in_chans": in_chans or (len(mean) if mean else None),
            "crop_pct": crop_pct if crop_pct is not None and crop_pct < 1 else None,
            "interpolation": RESAMPLE.get(resample) if isinstance(resample, int) else None,
        },
        path.name,
    )


# PIL's resampling codes as image processors store them (`resample`), those vcal's resize has (others: bilinear)
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def beside(weights: Path) -> Hints:
    """Hints from config.json and preprocessor_config.json next to a weights file (HF Trainer / hub layout)."""
    hints = Hints()
    cfg = weights.parent / "config.json"
    if cfg.is_file():
        hints = hints.merge(from_config_json(cfg))
    pre = weights.parent / "preprocessor_config.json"
    if pre.is_file():
        hints = hints.merge(from_preprocessor_config(pre, hints.in_chans))
    return hints

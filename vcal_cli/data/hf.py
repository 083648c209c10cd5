"""Hugging Face datasets: `hf:PATH` for a `save_to_disk` folder (a `Dataset` or a `DatasetDict`), a folder of parquet
files, or `hf:NAME` for a dataset in the local hub cache (read offline: vcal never downloads).

Columns: the image column is the one whose feature is an `Image` and the label column the one that is a
`ClassLabel` (its names are the class names), else one named `label` or `labels`, unless `--image-column` /
`--label-column` name them; a label column
that is not a `ClassLabel` must hold integers (class names are then 0..K-1). Splits: `train`, `validation` (or
`val`, `valid`) and `test` map to vcal's train, val and test; with no validation split, val is held out of train
(10%, seed 0, as for every source: `vcal_cli.data.splits`); a lone `Dataset` is pooled and split 60/10/30 the same
way. Parquet files are assigned to splits by their name's first word (`train-00000-of-00002.parquet`,
`test.parquet`; others are one pool). Images are decoded when a batch asks for them (`ImageSplit.load`), never all
at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcal_cli.data.base import SOURCES, ImageSplit, check_labels
from vcal_cli.data.splits import pool_split, train_val_split
from vcal_cli.errors import DataError, UsageError

VAL_NAMES = ("validation", "val", "valid")
SPLIT_WORDS = {"train": "train", "test": "test", **{v: "val" for v in VAL_NAMES}}


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UsageError(
            "--data hf:... needs the Hugging Face datasets library", hint="pip install 'vcal[hf]'"
        ) from None
    return datasets


def _open(spec: str) -> dict[str, Any]:
    """The data set's parts by vcal's split names ('all' for a lone Dataset or unnamed parquet files)."""
    ds = _datasets()
    target = spec.split(":", 1)[1] if ":" in spec else ""
    if not target:
        raise UsageError("--data hf: needs a folder or a cached dataset name, e.g. hf:./my_dataset")
    path = Path(target).expanduser()
    try:
        if path.is_dir() and (path / "dataset_dict.json").exists():
            loaded = ds.load_from_disk(str(path))
            return _by_split(dict(loaded), spec)
        if path.is_dir() and (path / "dataset_info.json").exists():
            return {"all": ds.load_from_disk(str(path))}
        if path.is_dir() and (files := sorted(path.rglob("*.parquet"))):
            return _parquet(files, ds)
        if path.exists():
            raise DataError(
                f"--data '{spec}': '{path}' is neither a save_to_disk folder nor a folder of parquet files",
                hint="save it with Dataset.save_to_disk or DatasetDict.save_to_disk",
            )
        return _from_cache(target, spec, ds)
    except (OSError, ValueError, FileNotFoundError) as e:
        raise DataError(f"--data '{spec}': cannot read it as a Hugging Face dataset ({str(e)[:200]})") from None


def _by_split(parts: dict[str, Any], spec: str) -> dict[str, Any]:
    out = {SPLIT_WORDS[k]: v for k, v in parts.items() if k in SPLIT_WORDS}
    if not out:
        raise DataError(f"--data '{spec}': splits {sorted(parts)}; vcal reads train, validation (or val) and test")
    return out


def _parquet(files: list[Path], ds: Any) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for f in files:
        word = f.name.split("-")[0].split(".")[0].lower()
        groups.setdefault(SPLIT_WORDS.get(word, "all"), []).append(str(f))
    if "all" in groups and len(groups) > 1:  # named and unnamed files: the unnamed ones are not a split
        del groups["all"]
    return {k: ds.load_dataset("parquet", data_files=v, split="train") for k, v in groups.items()}


def _from_cache(name: str, spec: str, ds: Any) -> dict[str, Any]:
    """A hub dataset already in the local cache, read with the libraries' offline switches on for the call (their
    environment variables are read at import, too late to set here)."""
    import huggingface_hub.constants as hub

    saved = (ds.config.HF_HUB_OFFLINE, ds.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE)
    ds.config.HF_HUB_OFFLINE = ds.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        loaded = ds.load_dataset(name)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds; each is one line here
        raise DataError(
            f"--data '{spec}': no such folder, and '{name}' is not in the local Hugging Face cache "
            f"({type(e).__name__})",
            hint="vcal never downloads: load it once with datasets.load_dataset, or save_to_disk and give the folder",
        ) from None
    finally:
        ds.config.HF_HUB_OFFLINE, ds.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE = saved
    return _by_split(dict(loaded), spec)


def _columns(d: Any, spec: str, image: str | None, label: str | None) -> tuple[str, str, list[str]]:
    """(image column, label column, class names) from the features, or the columns the flags name."""
    ds = _datasets()
    feats = d.features
    image = image or next((k for k, f in feats.items() if isinstance(f, ds.Image)), None)
    if image is None or image not in feats:
        raise DataError(
            f"--data '{spec}': no image column (columns: {', '.join(feats)})", hint="name it with --image-column"
        )
    label = label or next((k for k, f in feats.items() if isinstance(f, ds.ClassLabel)), None)
    label = label or next((k for k in ("label", "labels") if k in feats), None)  # the usual name, not a ClassLabel
    if label is None or label not in feats:
        raise DataError(
            f"--data '{spec}': no label column (columns: {', '.join(feats)})", hint="name it with --label-column"
        )
    f = feats[label]
    if isinstance(f, ds.ClassLabel):
        return image, label, list(f.names)
    if not (isinstance(f, ds.Value) and f.dtype.startswith(("int", "uint"))):
        raise DataError(
            f"--data '{spec}': label column '{label}' holds {getattr(f, 'dtype', type(f).__name__)}, not class indices",
            hint="give an integer or ClassLabel column with --label-column",
        )
    values = np.asarray(d[label])
    return image, label, [str(i) for i in range(int(values.max()) + 1 if len(values) else 0)]


def _pick(parts: dict[str, Any], split: str) -> tuple[Any, torch.Tensor | None]:
    """(the part, the rows of it) by vcal's split rule."""
    if split in ("train", "val") and "train" in parts and "val" not in parts:
        return parts["train"], train_val_split(len(parts["train"]), split)
    if split in parts:
        return parts[split], None
    if "all" in parts:
        return parts["all"], pool_split(len(parts["all"]), split)
    raise DataError(f"this Hugging Face dataset has no '{split}' split (it has: {', '.join(sorted(parts))})")


def _pixels(img: Any, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    img = img.convert(mode)
    if size is not None:
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img)


def load_hf(
    spec: str, split: str, root: Path | None = None, *, image_column: str | None = None, label_column: str | None = None
) -> ImageSplit:
    parts = _open(spec)
    part, rows = _pick(parts, split)
    image, label, names = _columns(part, spec, image_column, label_column)
    labels = torch.as_tensor(np.asarray(part[label]), dtype=torch.long)
    rows = torch.arange(len(labels)) if rows is None else rows
    y = check_labels(labels[rows], len(names), f"--data '{spec}' column '{label}'")
    images = part.select_columns([image])
    first = images[int(rows[0])][image] if len(rows) else None
    if first is None and len(rows):
        raise DataError(f"--data '{spec}': row {int(rows[0])} of column '{image}' holds no image")
    native = (
        1 if first is not None and first.mode in ("L", "1", "I;16") else 3,
        *(first.size[::-1] if first else (1, 1)),
    )
    mode = "L" if native[0] == 1 else "RGB"

    def load(indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        out = torch.empty(len(indices), native[0], *size, dtype=torch.uint8)
        picked = images.select(rows[indices].tolist())
        for j, row in enumerate(picked):
            arr = _pixels(row[image], mode, size)
            out[j] = torch.from_numpy(arr.copy()).reshape(size[0], size[1], -1).permute(2, 0, 1)
        return out

    identity = {"source": "hf", "fingerprint": getattr(part, "_fingerprint", None), "image": image, "label": label}
    return ImageSplit(
        name=f"hf:{spec.split(':', 1)[1]}",
        split=split,
        labels=y,
        classes=names,
        native_size=native,
        identity=identity,
        load=load,
    )  # type: ignore[arg-type]


SOURCES.register("hf", "hf:PATH (a save_to_disk folder or parquet files) or hf:NAME (the local hub cache)")(load_hf)

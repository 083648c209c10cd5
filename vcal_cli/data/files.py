"""User data on disk: `npz:PATH` arrays and `imagefolder:PATH` class folders."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from vcal_cli._io import sha256_file
from vcal_cli.data.base import SOURCES, ImageSplit, check_labels, label_tensor, to_nchw
from vcal_cli.data.splits import pool_split, train_val_split
from vcal_cli.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _path(spec: str, kind: str) -> Path:
    path = Path(spec.split(":", 1)[1]).expanduser() if ":" in spec else Path()
    if not str(path) or not path.exists():
        raise DataError(f"--data '{spec}': '{path}' does not exist", hint=f"give {kind}:PATH to an existing path")
    return path


def _pick(parts: dict[str, tuple[torch.Tensor, torch.Tensor]], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply vcal's split rule (see `vcal_cli.data.splits`) to whichever parts the source has."""
    if split in ("train", "val") and "train" in parts and "val" not in parts:
        x, y = parts["train"]  # val is held out of the official train part
        idx = train_val_split(len(y), split)
        return x[idx], y[idx]
    if split in parts:
        return parts[split]
    if "all" in parts:
        x, y = parts["all"]
        idx = pool_split(len(y), split)
        return x[idx], y[idx]
    raise DataError(f"this data set has no '{split}' part (it has: {', '.join(sorted(parts))})")


@SOURCES.register("npz", "npz:PATH with arrays x (NCHW or NHWC, uint8 or float) and y; or x_train/x_val/x_test")
def load_npz(spec: str, split: str, root: Path | None = None) -> ImageSplit:
    path = _path(spec, "npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"--data '{spec}': cannot read '{path}' as .npz ({e})") from None
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, name in (("", "all"), ("_train", "train"), ("_val", "val"), ("_test", "test")):
        if f"x{key}" in arrays:
            if f"y{key}" not in arrays:
                raise DataError(f"--data '{spec}': '{path}' has x{key} but no y{key}")
            x = to_nchw(torch.from_numpy(np.ascontiguousarray(arrays[f"x{key}"])), f"'{path}' x{key}")
            y = label_tensor(arrays[f"y{key}"], f"--data '{spec}': y{key}")
            if len(x) != len(y):
                raise DataError(f"--data '{spec}': x{key} has {len(x)} images but y{key} {len(y)} labels")
            parts[name] = (x, y)
    if not parts:
        raise DataError(f"--data '{spec}': '{path}' holds {sorted(arrays)}; vcal needs arrays 'x' and 'y'")
    num_classes = int(max(int(y.max()) if len(y) else -1 for _, y in parts.values())) + 1
    names = [str(c) for c in arrays["classes"]] if "classes" in arrays else [str(i) for i in range(num_classes)]
    x, y = _pick(parts, split)
    y = check_labels(y, len(names), f"'{path}'")
    return ImageSplit(
        name=f"npz:{path}",
        split=split,
        labels=y,
        classes=names,
        native_size=tuple(x.shape[1:]),  # type: ignore[arg-type]
        identity={"source": "npz", "sha256": sha256_file(path)},
        images=x,
    )


def _folder_files(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """The images under folder/<class>/, in a stable order. A link (file or folder) that leads out of the folder
    is refused: vcal reads only what lies inside the folder it was given."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    inside = folder.resolve()
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((folder / c).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                if not f.resolve().is_relative_to(inside):
                    raise DataError(
                        f"imagefolder '{folder}': '{f}' is a link to '{f.resolve()}', outside the folder; vcal reads "
                        "only files inside the folder it is given",
                        hint="give the folder the links point into, or copy the images in",
                    )
                files.append(f)
                labels.append(i)
    return files, labels, classes


@SOURCES.register("imagefolder", "imagefolder:PATH with one folder per class (or train/ val/ test/ inside)")
def load_imagefolder(spec: str, split: str, root: Path | None = None) -> ImageSplit:
    from PIL import Image

    path = _path(spec, "imagefolder")
    split_dirs = [s for s in ("train", "val", "test") if (path / s).is_dir()]
    if split_dirs:
        if split in ("train", "val") and "train" in split_dirs and "val" not in split_dirs:
            files, labels, classes = _folder_files(path / "train")  # val is held out of train/
            idx = train_val_split(len(files), split)
        elif split in split_dirs:
            files, labels, classes = _folder_files(path / split)
            idx = torch.arange(len(files))
        else:
            raise DataError(f"--data '{spec}': no '{split}/' folder in '{path}' (it has: {', '.join(split_dirs)})")
    else:
        files, labels, classes = _folder_files(path)
        idx = pool_split(len(files), split) if files else torch.arange(0)
    if not classes:
        raise DataError(
            f"--data '{spec}': '{path}' has no class sub-folders", hint="lay it out as PATH/<class>/<image>"
        )
    files = [files[i] for i in idx.tolist()]
    y = torch.tensor([labels[i] for i in idx.tolist()], dtype=torch.long)
    listing = hashlib.sha256("\n".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files).encode())
    try:
        with Image.open(files[0]) if files else _nullimage() as im:
            native = (1 if im.mode in ("L", "1", "I;16") else 3, im.height, im.width)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image '{files[0]}' ({_why(e)})", hint="remove or replace the file") from None

    def load(indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        mode = "L" if native[0] == 1 else "RGB"
        out = torch.empty(len(indices), native[0], *size, dtype=torch.uint8)
        for j, i in enumerate(indices.tolist()):
            try:
                with Image.open(files[i]) as im:
                    arr = np.asarray(im.convert(mode).resize((size[1], size[0]), Image.BILINEAR))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise DataError(
                    f"cannot decode image '{files[i]}' ({_why(e)})", hint="remove or replace the file"
                ) from None
            out[j] = torch.from_numpy(arr.copy()).reshape(size[0], size[1], -1).permute(2, 0, 1)
        return out

    return ImageSplit(
        name=f"imagefolder:{path}",
        split=split,
        labels=y,
        classes=classes,
        native_size=native,  # type: ignore[arg-type]
        identity={"source": "imagefolder", "listing": listing.hexdigest()},
        load=load,
    )


def _why(e: Exception) -> str:
    """A decoder's complaint, short: PIL names the whole path and the pixel count of a bomb."""
    text = str(e).split(". ")[0]
    return f"{type(e).__name__}: {text[:120]}"


class _nullimage:  # an empty context for an empty folder (ImageSplit then reports it)
    height = width = 1
    mode = "RGB"

    def __enter__(self) -> _nullimage:
        return self

    def __exit__(self, *a: object) -> None:
        return None

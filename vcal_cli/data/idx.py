"""MNIST and Fashion-MNIST from their original idx files, gzipped or not, as users hold them.

The files are looked for straight under `--data-root` (the layout of the original downloads and of
Debian's `dataset-fashion-mnist` package, `/usr/share/datasets/fashion-mnist`), then in torchvision's
layout (`MNIST/raw/`, `FashionMNIST/raw/`). No unzipping and no torchvision folder layout are needed. When
neither `--data-root` nor `$VCAL_DATA` names a folder and `./data` lacks the files, Debian's package folder is
looked at last: `apt-get install dataset-fashion-mnist` is then all `--data fashion-mnist` needs.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from vcal_cli.data.base import SOURCES, ImageSplit, check_labels, resolve_root
from vcal_cli.data.splits import train_val_split
from vcal_cli.errors import DataError

# torchvision's class names, so reports and hierarchies name classes the same way
_CLASSES = {
    "mnist": [
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
_SUBDIRS = {"mnist": ("", "MNIST/raw", "mnist"), "fashion-mnist": ("", "FashionMNIST/raw", "fashion-mnist")}
# where a system package puts the files: looked at last, when the user named no folder
SYSTEM_ROOTS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """One idx file (`.gz` or plain): a big-endian magic (0, 0, dtype code, ndim), ndim uint32 sizes, data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"'{path}' is not a readable idx file ({e})", hint="re-download or reinstall it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"'{path}' is not an idx file (bad magic number)", hint="re-download or reinstall it")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - 4 - 4 * ndim != need:
        raise DataError(
            f"'{path}' is truncated or padded: {len(raw) - 4 - 4 * ndim} data bytes, shape {dims} needs {need}"
        )
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims)


def find_files(name: str, root: Path, prefix: str) -> tuple[Path, Path] | None:
    """(images, labels) for `prefix` ('train' or 't10k') under `root`, gzipped or not, or None."""
    for sub in _SUBDIRS[name]:
        d = root / sub if sub else root
        for ext in (".gz", ""):
            img, lab = d / f"{prefix}-images-idx3-ubyte{ext}", d / f"{prefix}-labels-idx1-ubyte{ext}"
            if img.is_file() and lab.is_file():
                return img, lab
    return None


def _make(name: str):
    def load(spec: str, split: str, root: Path | None = None) -> ImageSplit:
        root_path = resolve_root(root)
        prefix = "t10k" if split == "test" else "train"
        files = find_files(name, root_path, prefix)
        if files is None and root is None and not os.environ.get("VCAL_DATA") and name in SYSTEM_ROOTS:
            files = find_files(name, SYSTEM_ROOTS[name], prefix)
        if files is None:
            raise DataError(
                f"data set '{name}' not found under --data-root '{root_path}'",
                hint=f"expected {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] there or in "
                f"{_SUBDIRS[name][1]}/"
                + (
                    " (apt-get install dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist)"
                    if name == "fashion-mnist"
                    else ""
                )
                + "; vcal never downloads",
            )
        x, y = read_idx(files[0]), read_idx(files[1])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"'{files[0]}' and '{files[1]}' do not match: images {x.shape}, labels {y.shape}")
        images = torch.from_numpy(x.astype(np.uint8, copy=True))[:, None]
        labels = check_labels(torch.from_numpy(y.astype(np.int64)), 10, f"'{files[1]}'")
        if split != "test":
            idx = train_val_split(len(labels), split)
            images, labels = images[idx], labels[idx]
        return ImageSplit(
            name=name,
            split=split,
            labels=labels,
            classes=list(_CLASSES[name]),
            native_size=(1, *x.shape[1:]),  # type: ignore[arg-type]
            identity={
                "source": "idx",
                "files": [f.name for f in files],
                "root": str(files[0].parent.resolve()),
                "n": len(labels),
            },
            images=images.contiguous(),
        )

    return load


for _name in _CLASSES:
    SOURCES.register(_name, f"{_name} idx files (.gz or not) from --data-root, as downloaded or from Debian")(
        _make(_name)
    )

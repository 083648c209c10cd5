"""SVHN and CIFAR-10/100 through torchvision, from local files only (MNIST and Fashion-MNIST: `idx.py`).

vcal never downloads: each class is built with `download=False` under `--data-root`, and a missing
data set gets a message naming the files torchvision expects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcal_cli.data.base import SOURCES, ImageSplit, check_labels, resolve_root
from vcal_cli.data.splits import train_val_split
from vcal_cli.errors import DataError

# name: (torchvision class, files expected under the root, native size)
_SETS: dict[str, tuple[str, str, tuple[int, int, int]]] = {
    "svhn": ("SVHN", "train_32x32.mat and test_32x32.mat", (3, 32, 32)),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)", (3, 32, 32)),
    "cifar100": ("CIFAR100", "cifar-100-python/ (train, test, meta)", (3, 32, 32)),
}
_SVHN_CLASSES = [str(i) for i in range(10)]


def _open(name: str, root: Path, train: bool):  # a torchvision VisionDataset
    import torchvision.datasets as tvd

    cls_name, files, _ = _SETS[name]
    cls = getattr(tvd, cls_name)
    try:
        if name == "svhn":
            return cls(str(root), split="train" if train else "test", download=False)
        return cls(str(root), train=train, download=False)
    except (RuntimeError, FileNotFoundError, OSError, ValueError):  # torchvision's message offers to download
        raise DataError(
            f"data set '{name}' not found under --data-root '{root}'",
            hint=f"expected {files} there; vcal never downloads",
        ) from None


def _arrays(name: str, ds) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if name == "svhn":  # data (N, 3, 32, 32) uint8; labels 0..9 (torchvision maps the .mat's 10 to 0)
        return torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels), _SVHN_CLASSES
    data = torch.from_numpy(np.ascontiguousarray(ds.data))
    images = data.permute(0, 3, 1, 2)  # CIFAR (N,H,W,C)
    return images.contiguous(), torch.as_tensor(ds.targets), list(ds.classes)


def _make(name: str):
    def load(spec: str, split: str, root: Path | None = None) -> ImageSplit:
        root_path = resolve_root(root)
        ds = _open(name, root_path, train=split != "test")
        images, labels, classes = _arrays(name, ds)
        labels = check_labels(labels, len(classes), f"data set '{name}'")
        if split != "test":
            idx = train_val_split(len(labels), split)
            images, labels = images[idx], labels[idx]
        return ImageSplit(
            name=name,
            split=split,
            labels=labels,
            classes=classes,
            native_size=_SETS[name][2],
            identity={"source": f"torchvision.{_SETS[name][0]}", "root": str(root_path.resolve()), "n": len(labels)},
            images=images,
        )

    return load


for _name, (_cls, _files, _size) in _SETS.items():
    SOURCES.register(_name, f"torchvision {_cls} from --data-root (expects {_files})")(_make(_name))

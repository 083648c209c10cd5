"""Data sets by name: `digits`, `svhn`, `cifar10`, `cifar100`, `mnist`, `fashion-mnist`,
`imagefolder:PATH`, `npz:PATH`. See `vcal_cli.data.splits` for the split rule."""

from __future__ import annotations

from pathlib import Path

from vcal_cli.data import digits, files, torchvision_sets  # noqa: F401  (each registers its sources)
from vcal_cli.data.base import SOURCES, ImageSplit
from vcal_cli.data.preprocessing import Preprocessing, resolve_preprocessing
from vcal_cli.data.splits import SPLITS

__all__ = ["ImageSplit", "Preprocessing", "SOURCES", "SPLITS", "load_split", "resolve_preprocessing", "data_names"]


def data_names() -> list[str]:
    return [n + (":PATH" if n in ("npz", "imagefolder") else "") for n in SOURCES.names()]


def load_split(data: str, split: str = "test", *, root: str | Path | None = None) -> ImageSplit:
    """Load one split of a data set named as on the command line (`--data`)."""
    if split not in SPLITS:
        from vcal_cli.errors import UsageError

        raise UsageError(f"--split '{split}' is not a split; choose one of: {', '.join(SPLITS)}")
    key = data.split(":", 1)[0] if data.split(":", 1)[0] in ("npz", "imagefolder") else data
    if key not in SOURCES:
        from vcal_cli.errors import UsageError

        raise UsageError(f"--data '{data}' is not a data set; choose one of: {', '.join(data_names())}")
    return SOURCES.get(key)(data, split, Path(root) if root else None)

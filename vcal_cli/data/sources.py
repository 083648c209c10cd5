"""Load a split of a data set by the name given on the command line; every source module registers itself."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from vcal_cli.data import digits, files, hf, idx, torchvision_sets, wds  # noqa: F401  (each registers its sources)
from vcal_cli.data.base import SOURCES, ImageSplit
from vcal_cli.data.splits import SPLITS, VAL_FROM, test_halves
from vcal_cli.errors import UsageError

PATH_SOURCES = (
    "npz",
    "imagefolder",
    "hf",
    "wds",
)  # named with a path (or, for hf, a cached dataset name) after a colon


def data_names() -> list[str]:
    return [n + (":PATH" if n in PATH_SOURCES else "") for n in SOURCES.names()]


def load_split(
    data: str,
    split: str = "test",
    *,
    root: str | Path | None = None,
    val_from: str = "train",
    columns: tuple[str | None, str | None] = (None, None),
) -> ImageSplit:
    """Load one split of a data set named as on the command line (`--data`).

    `val_from="test"` takes `val` from one fixed half of the official test part and leaves the whole train
    part to `train` (see `vcal_cli.data.splits`): for models trained on all of it. `columns`: the image and label
    columns of a Hugging Face dataset (None: found from its features).
    """
    if split not in SPLITS:
        raise UsageError(f"--split '{split}' is not a split; choose one of: {', '.join(SPLITS)}")
    if val_from not in VAL_FROM:
        raise UsageError(f"--val-from '{val_from}' is not a choice; choose one of: {', '.join(VAL_FROM)}")
    key = data.split(":", 1)[0] if data.split(":", 1)[0] in PATH_SOURCES else data
    if key not in SOURCES:
        raise UsageError(f"--data '{data}' is not a data set; choose one of: {', '.join(data_names())}")
    source = SOURCES.get(key)
    if key == "hf":
        source = partial(source, image_column=columns[0], label_column=columns[1])
    elif columns != (None, None):
        raise UsageError(f"--image-column and --label-column are for Hugging Face datasets (hf:PATH), not '{data}'")
    path = Path(root) if root else None
    if val_from == "train":
        return source(data, split, path)
    tag = {"val_from": "test"}
    if split == "train":
        return ImageSplit.concat(source(data, "train", path), source(data, "val", path), "train", tag)
    test = source(data, "test", path)
    return test.subset(test_halves(len(test), split), split, tag)

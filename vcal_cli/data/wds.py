"""WebDataset tar shards: `wds:PATTERN`, read by the `webdataset` library, streamed, never all in memory.

PATTERN is a brace pattern of shard files (`shards/train-{000000..000099}.tar`) holding a `{split}` placeholder for the
split's name (`shards/{split}-{000000..000099}.tar`), or a folder whose shards start with the split's name
(`train-000000.tar`, `val-...`, `test-...`); a pattern without `{split}` is one pool, split by vcal's rule. A sample
is an image (`.jpg`, `.jpeg`, `.png`, `.webp`) and a label: `.cls` (an integer), else `.json` with a `label` key;
class names from a `classes.txt` beside the shards (one per line), else 0..K-1 with K the split's largest label + 1.
Split names: `train`, `val` (or `validation`), `test`; with no val shards, val is held out of train as for every
source (`vcal_cli.data.splits`).

A first pass reads the labels (the tar streams, the images left undecoded); images are decoded when a batch asks for
them, streaming on from where the last batch ended (extraction reads in order; a rank of `torchrun` starts at its own
rows, at the shard that holds them). The cache key follows the shard list with each file's size and time.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcal_cli.data.base import SOURCES, ImageSplit, check_labels
from vcal_cli.data.splits import pool_split, train_val_split
from vcal_cli.errors import DataError, UsageError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def _wds() -> Any:
    try:
        import webdataset
    except ImportError:
        raise UsageError("--data wds:... needs the webdataset library", hint="pip install 'vcal[webdataset]'") from None
    return webdataset


def _expand(pattern: str) -> list[Path]:
    from braceexpand import braceexpand

    return [Path(p).expanduser() for p in braceexpand(pattern)]


def shard_lists(spec: str) -> dict[str, list[Path]]:
    """The shard files of each split ('all' for a pattern without `{split}`), each list existing and non-empty."""
    _wds()  # the library (and braceexpand, which comes with it) before anything else: missing, it is one line
    pattern = spec.split(":", 1)[1] if ":" in spec else ""
    if not pattern:
        raise UsageError("--data wds: needs a shard pattern or folder, e.g. wds:shards/{split}-{000000..000009}.tar")
    folder = Path(pattern).expanduser()
    if folder.is_dir():
        out = {}
        for split, names in SPLIT_NAMES.items():
            files = sorted(f for n in names for f in folder.glob(f"{n}[-_.]*.tar"))
            if files:
                out[split] = files
        if not out:
            raise DataError(f"--data '{spec}': no train-*.tar, val-*.tar or test-*.tar shards in '{folder}'")
        return out
    if "{split}" in pattern:
        out = {}
        for split, names in SPLIT_NAMES.items():
            for n in names:
                files = _expand(pattern.replace("{split}", n))
                if all(f.exists() for f in files):
                    out[split] = files
                    break
        if not out:
            raise DataError(f"--data '{spec}': the pattern matches no shard for train, val or test")
        return out
    files = _expand(pattern)
    missing = [f for f in files if not f.exists()]
    if missing:
        raise DataError(f"--data '{spec}': {len(missing)} of {len(files)} shards do not exist, e.g. '{missing[0]}'")
    return {"all": files}


def _every_shard(src: Iterator[Any], group: Any = None) -> Iterator[Any]:
    """webdataset's node splitter, as the identity: vcal splits the rows across `torchrun` ranks itself (each rank
    streams the shards that hold its rows), so webdataset must not split the shard list again."""
    return src


def _samples(files: list[Path]) -> Iterator[dict[str, Any]]:
    """The raw samples (bytes per extension) of `files` in order, streamed by webdataset."""
    urls = [str(f) for f in files]
    yield from _wds().WebDataset(urls, shardshuffle=False, empty_check=False, nodesplitter=_every_shard)


def _label(sample: dict[str, Any], where: str) -> int:
    if "cls" in sample:
        text = sample["cls"].decode().strip() if isinstance(sample["cls"], bytes) else str(sample["cls"])
        try:
            return int(text)
        except ValueError:
            raise DataError(
                f"{where}: sample '{sample.get('__key__')}' has .cls '{text[:20]}', not an integer"
            ) from None
    if "json" in sample:
        meta = json.loads(sample["json"])
        if isinstance(meta, dict) and isinstance(meta.get("label"), int):
            return int(meta["label"])
    raise DataError(
        f"{where}: sample '{sample.get('__key__')}' has no label",
        hint="give each sample a .cls file or a .json with a 'label'",
    )


def _image_key(sample: dict[str, Any], where: str) -> str:
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise DataError(f"{where}: sample '{sample.get('__key__')}' has no .jpg, .png or .webp image")
    return key


@functools.lru_cache(maxsize=8)
def _index(
    listing: tuple[tuple[str, int, int], ...], where: str
) -> tuple[torch.Tensor, list[int], tuple[int, int, int]]:
    """One pass over the shards `listing` names (path, size, time: a changed file is read again): every label, the
    sample count of each shard, the first image's (C, H, W). Kept for the next split of the same shards (train and
    the val held out of it read one pass)."""
    from PIL import Image

    labels, counts, native = [], [], None
    for f in (Path(name) for name, _, _ in listing):
        n = 0
        for sample in _samples([f]):
            labels.append(_label(sample, where))
            if native is None:
                with Image.open(io.BytesIO(sample[_image_key(sample, where)])) as im:
                    native = (1 if im.mode in ("L", "1", "I;16") else 3, im.height, im.width)
            n += 1
        counts.append(n)
    if native is None:
        raise DataError(f"{where}: the shards hold no samples")
    return torch.tensor(labels, dtype=torch.long), counts, native


class _Stream:
    """Decoded images in shard order, continuing from the last row asked for (restarting at the shard that holds a
    row before it)."""

    def __init__(self, files: list[Path], counts: list[int], where: str) -> None:
        self.files, self.where = files, where
        self.starts = np.cumsum([0, *counts])
        self.next_row, self.it = -1, None

    def rows(self, wanted: list[int]) -> Iterator[tuple[int, bytes, str]]:
        for row in wanted:
            if self.it is None or row < self.next_row:
                shard = int(np.searchsorted(self.starts, row, side="right") - 1)
                self.it, self.next_row = _samples(self.files[shard:]), int(self.starts[shard])
            while True:
                sample = next(self.it)
                self.next_row += 1
                if self.next_row - 1 == row:
                    key = _image_key(sample, self.where)
                    yield row, sample[key], key
                    break


def load_wds(spec: str, split: str, root: Path | None = None) -> ImageSplit:
    from PIL import Image

    lists = shard_lists(spec)
    if split in ("train", "val") and "train" in lists and "val" not in lists:
        files, pick = lists["train"], "held"
    elif split in lists:
        files, pick = lists[split], None
    elif "all" in lists:
        files, pick = lists["all"], "pool"
    else:
        raise DataError(f"--data '{spec}': no '{split}' shards (it has: {', '.join(sorted(lists))})")
    where = f"--data '{spec}'"
    listing = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    labels, counts, native = _index(listing, where)
    rows = torch.arange(len(labels))
    if pick == "held":
        rows = train_val_split(len(labels), split)
    elif pick == "pool":
        rows = pool_split(len(labels), split)
    names = _class_names(files[0].parent) or [str(i) for i in range(int(labels.max()) + 1)]
    y = check_labels(labels[rows], len(names), where)
    stream = _Stream(files, counts, where)
    mode = "L" if native[0] == 1 else "RGB"

    def load(indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        wanted = rows[indices].tolist()
        order = sorted(range(len(wanted)), key=lambda j: wanted[j])
        out = torch.empty(len(wanted), native[0], *size, dtype=torch.uint8)
        for j, (_, data, _) in zip(order, stream.rows([wanted[j] for j in order]), strict=True):
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert(mode).resize((size[1], size[0]), Image.BILINEAR))
            out[j] = torch.from_numpy(arr.copy()).reshape(size[0], size[1], -1).permute(2, 0, 1)
        return out

    identity = {"source": "wds", "shards": [list(x) for x in listing], "rows": pick or "all"}
    name = f"wds:{spec.split(':', 1)[1]}"
    return ImageSplit(name=name, split=split, labels=y, classes=names, native_size=native, identity=identity, load=load)  # type: ignore[arg-type]


def _class_names(folder: Path) -> list[str] | None:
    """`classes.txt` (one name per line, in label order) beside the shards, if there is one."""
    path = folder / "classes.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else None


SOURCES.register("wds", "wds:PATTERN (tar shards with {split}, or a folder of train-/val-/test- shards)")(load_wds)

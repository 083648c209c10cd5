"""Load a checkpoint and get its features on a split, with one set of options for every command.

`ExtractOptions` holds every loading, preprocessing and extraction flag; `load_features` resolves the
checkpoint, the data set and the preprocessing (read from the checkpoint, else probed on val) and returns
the split's cached features. Every command above this layer (audit, retrain, gate, frontier, the
robustness evaluations) goes through it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from vcal_cli._defaults import DEFAULT_AUGMENT
from vcal_cli.checkpoints import LoadedModel, apply_head_file, load_checkpoint
from vcal_cli.data import ImageSplit, Preprocessing, data_names, load_split, probe_candidates, resolve_preprocessing
from vcal_cli.data.augment import augmented
from vcal_cli.errors import UsageError, VcalError
from vcal_cli.features.extract import Runtime, Track, quiet
from vcal_cli.features.load import FeatureSet, get_features
from vcal_cli.features.probe import probe_preprocessing
from vcal_cli.features.settings import ExtractOptions
from vcal_cli.heads import FitData

__all__ = [
    "ExtractOptions",
    "default_data",
    "load_features",
    "load_train_views",
    "model_preprocessing",
    "open_checkpoint",
]


def open_checkpoint(checkpoint: str | Path | LoadedModel, options: ExtractOptions | None = None) -> LoadedModel:
    """Load a checkpoint by path with the options' loading flags (and `head_file` applied); a `LoadedModel`
    is returned as it is."""
    if isinstance(checkpoint, LoadedModel):
        return checkpoint
    o = options or ExtractOptions()
    loaded = load_checkpoint(checkpoint, arch=o.arch, trust=o.trust_checkpoint, head_module=o.head_module)
    if o.head_file:
        loaded = apply_head_file(loaded, o.head_file)
    return loaded


def default_data(loaded: LoadedModel, data: str | None) -> str:
    """`data`, else the data set a vcal checkpoint records it was trained on; else `--data` is required."""
    if data:
        return data
    meta = loaded.metadata
    recorded = meta.get("data") or meta.get("trained_on", "").split(":")[0]
    if recorded:
        return recorded
    raise UsageError(
        f"name the data set with --data: '{loaded.path or 'the checkpoint'}' does not record the one it was trained on",
        hint=f"choose one of: {', '.join(data_names())}",
    )


def load_features(
    checkpoint: str | Path | LoadedModel,
    data: str | ImageSplit | None = None,
    split: str = "test",
    options: ExtractOptions | None = None,
    *,
    check_classes: bool = True,
    progress: Track = quiet,
) -> tuple[LoadedModel, FeatureSet, Preprocessing]:
    """Load a checkpoint (or take a loaded one) and return its features on `data:split` (cached).

    `options.head_file` is applied to a checkpoint given by path; a `LoadedModel` is used as it is.
    `check_classes=False` lets the data have other classes (out-of-distribution sets).
    """
    o = options or ExtractOptions()
    if o.batch_size < 1:
        raise UsageError(f"--batch-size {o.batch_size} must be at least 1")
    if o.workers < 0:
        raise UsageError(f"--workers {o.workers} must be 0 or more")
    loaded = open_checkpoint(checkpoint, o)
    if not isinstance(data, ImageSplit):
        data = default_data(loaded, data)
    ds = data if isinstance(data, ImageSplit) else load_split(data, split, root=o.data_root, val_from=o.val_from)
    prep = model_preprocessing(loaded, data, ds, o, probe=check_classes)
    fs = get_features(
        loaded,
        ds,
        prep,
        cache_dir=o.cache_dir,
        use_cache=o.use_cache,
        device=o.device,
        batch_size=o.batch_size,
        workers=o.workers,
        precision=o.precision,
        channels_last=o.channels_last,
        cache_dtype_name=o.cache_dtype,
        shard_size=o.shard_size,
        check_classes=check_classes,
        progress=progress,
    )
    return loaded, fs, prep


def load_train_views(
    loaded: LoadedModel,
    data: str,
    views: int,
    augment: str = DEFAULT_AUGMENT,
    options: ExtractOptions | None = None,
    *,
    seed: int = 0,
    progress: Track = quiet,
) -> FitData:
    """The train split's features under `views` augmented views (`vcal_cli.data.augment`), each extracted once
    and cached, as one FitData (rows view by view): what the heads that learn on train can learn from instead
    of clean features a backbone trained past fitting has memorised."""
    o = options or ExtractOptions()
    clean = load_split(data, "train", root=o.data_root, val_from=o.val_from)
    sets = [load_features(loaded, augmented(clean, augment, i, seed), "train", o, progress=progress)[1]
            for i in range(views)]  # fmt: skip
    return FitData(*(torch.cat([getattr(f, a)[:] for f in sets]) for a in ("features", "logits", "labels")))


def model_preprocessing(
    loaded: LoadedModel, data: str | ImageSplit, ds: ImageSplit, o: ExtractOptions, *, probe: bool = True
) -> Preprocessing:
    """The model's preprocessing: from what was said (flags, metadata, the checkpoint's own training record),
    else probed on the val split of `data` (once per model: OOD sets and later splits reuse it)."""
    flags = {"input_size": o.input_size, "mean": o.mean, "std": o.std}
    said = resolve_preprocessing(
        flags=flags, checkpoint=loaded.preprocessing, hints=loaded.hints, timm_cfg=loaded.timm_cfg,
        model_in_chans=loaded.in_chans, native_size=ds.native_size,
    )  # fmt: skip
    if said is not None:
        return said
    if loaded.probed is not None:
        return loaded.probed
    if not probe:  # an OOD set's labels cannot score candidates: the data's native size, unnormalised, said so
        plain = probe_candidates(loaded.timm_cfg, loaded.in_chans, ds.native_size, ((0.0,), (1.0,)))[-1]
        return replace(plain, source=f"{plain.source} (not probed: no in-distribution split yet)")
    if isinstance(data, ImageSplit):
        val = data
    else:
        try:
            val = load_split(data, "val", root=o.data_root, val_from=o.val_from)
        except VcalError:
            val = ds
    rt = Runtime(o.device, o.batch_size, 0, o.precision, o.channels_last)
    loaded.probed = probe_preprocessing(loaded, val, rt, o.cache_dir, o.use_cache)
    return loaded.probed

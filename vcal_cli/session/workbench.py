"""The workbench every command takes: a checkpoint opened once, with its data set, preprocessing and class names
resolved once, serving any split's features (memoised) and the heads' fit data.

    bench = Workbench.open("model.pth.tar", "fashion-mnist", ExtractOptions.of(cache_dir="cache"))
    test = bench.features("test")        # extracted once, then read from the cache
    train = bench.fit_data("train")      # what a head learns from
    bench.release()                      # under torchrun: ranks > 0 stop here

Nothing below the commands opens a checkpoint or resolves a data set on its own: `audit`, `retrain`, `gate`,
`frontier` and the robustness evaluations all go through one `Workbench`. A new checkpoint format is a change in
`vcal_cli.checkpoints` only; a new evaluation asks the workbench for the splits it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from vcal_cli._defaults import DEFAULT_AUGMENT
from vcal_cli.checkpoints import LoadedModel, apply_head_file, load_checkpoint
from vcal_cli.data import ImageSplit, Preprocessing, data_names, load_split, probe_candidates, resolve_preprocessing
from vcal_cli.data.augment import augmented
from vcal_cli.data.preprocessing import torchvision_weights
from vcal_cli.errors import UsageError, VcalError
from vcal_cli.features.bundle import is_bundle, open_bundle
from vcal_cli.features.distributed import release_workers
from vcal_cli.features.extract import Track, quiet
from vcal_cli.features.load import FeatureSet, get_features
from vcal_cli.features.settings import ExtractOptions
from vcal_cli.heads import FitData
from vcal_cli.session.probe import probe_preprocessing

__all__ = ["ExtractOptions", "Workbench", "default_data", "load_features", "model_preprocessing", "open_checkpoint"]


@dataclass(eq=False, kw_only=True)
class Workbench:
    """A model and its data, resolved once. Build it with `Workbench.open`; `data` is a data-set name (any
    `--data` form) or one in-memory `ImageSplit` (then every split asked for is that split)."""

    model: LoadedModel
    data: str | ImageSplit
    options: ExtractOptions = field(default_factory=ExtractOptions)
    progress: Track = quiet
    _images: dict[str, ImageSplit] = field(default_factory=dict, repr=False)
    _features: dict[str, FeatureSet] = field(default_factory=dict, repr=False)
    _prep: Preprocessing | None = field(default=None, repr=False)
    from_file: bool = False  # features computed elsewhere (`vcal_cli.features.bundle`): no images, no extraction

    @classmethod
    def open(
        cls,
        checkpoint: str | Path | LoadedModel | Workbench,
        data: str | ImageSplit | None = None,
        options: ExtractOptions | None = None,
        *,
        progress: Track = quiet,
    ) -> Workbench:
        """Open `checkpoint` (a path, with `options.load.head_file` applied; a `LoadedModel` as it is) on `data`
        (default: the data set a vcal checkpoint records). A `Workbench` is returned as it is."""
        if isinstance(checkpoint, Workbench):
            return checkpoint
        o = options or ExtractOptions()
        if not isinstance(checkpoint, LoadedModel) and is_bundle(checkpoint):
            return cls._from_bundle(Path(checkpoint), data, o, progress)
        loaded = open_checkpoint(checkpoint, o)
        return cls(
            model=loaded,
            data=data if isinstance(data, ImageSplit) else default_data(loaded, data),
            options=o,
            progress=progress,
        )

    @classmethod
    def _from_bundle(cls, path: Path, data: str | ImageSplit | None, o: ExtractOptions, progress: Track) -> Workbench:
        """Features computed elsewhere; with `--head-file`, every split's logits are that head's."""
        loaded, splits = open_bundle(path)
        if o.load.head_file:
            loaded = apply_head_file(loaded, o.load.head_file)
            with torch.no_grad():
                for fs in splits.values():
                    fs.logits = torch.cat([loaded.head(fs.features[i : i + 4096]) for i in range(0, len(fs), 4096)])
        name = data if isinstance(data, str) and data else f"features:{path.name}"
        return cls(model=loaded, data=name, options=o, progress=progress, _features=splits, from_file=True)

    def labels(self, split: str) -> Tensor:
        """The split's labels (without extracting anything)."""
        return self.features(split).labels if self.from_file else self.images(split).labels

    def split_preprocessing(self, split: str) -> Preprocessing | None:
        """The preprocessing the split's features were computed with (None: computed elsewhere)."""
        return None if self.from_file else self.preprocessing_for(self.images(split))

    @property
    def name(self) -> str:
        """The data set's name, as reports record it."""
        return self.data.name if isinstance(self.data, ImageSplit) else self.data

    def images(self, split: str = "test") -> ImageSplit:
        """The split's images and labels (loaded once)."""
        if self.from_file:
            raise UsageError(
                f"'{self.model.path}' holds features computed elsewhere, not images: --shift, --ood and --adversarial "
                "need a checkpoint"
            )
        if isinstance(self.data, ImageSplit):
            return self.data
        if split not in self._images:
            o = self.options
            columns = (o.data.image_column, o.data.label_column)
            self._images[split] = load_split(
                self.data, split, root=o.data.data_root, val_from=o.data.val_from, columns=columns
            )
        return self._images[split]

    def features(self, split: str = "test") -> FeatureSet:
        """Features, logits and labels of `split` (from the cache, else extracted once and cached)."""
        if split not in self._features:
            if self.from_file:
                raise UsageError(f"'{self.model.path}' has no {split} split (it needs {split}_features)")
            self._features[split] = self.features_of(self.images(split))
        return self._features[split]

    def features_of(self, ds: ImageSplit | str, *, in_distribution: bool = True) -> FeatureSet:
        """Features of a split derived from the data (a corrupted or augmented copy), or of another data set
        (`in_distribution=False`: an out-of-distribution set, by name or split, whose classes may differ)."""
        if isinstance(ds, str):
            ds = load_split(ds, "test", root=self.options.data.data_root)
        prep = self.preprocessing_of(ds, in_distribution=in_distribution)
        return get_features(self.model, ds, prep, self.options, check_classes=in_distribution, progress=self.progress)

    def fit_data(self, split: str) -> FitData:
        """What a head learns from (train) or is selected and fitted on (val)."""
        fs = self.features(split)
        return FitData(fs.features, fs.logits, fs.labels)

    def train_views(self, views: int, augment: str = DEFAULT_AUGMENT, *, seed: int = 0) -> FitData:
        """The train split under `views` augmented views (`vcal_cli.data.augment`), each extracted once and cached,
        as one FitData (rows view by view): what the heads that learn on train can learn from instead of clean
        features a backbone trained past fitting has memorised."""
        clean = self.images("train")
        sets = [self.features_of(augmented(clean, augment, i, seed)) for i in range(views)]
        return FitData(*(torch.cat([getattr(f, a)[:] for f in sets]) for a in ("features", "logits", "labels")))

    def preprocessing_for(self, ds: ImageSplit) -> Preprocessing:
        """The model's preprocessing, resolved once (on the first split asked for: every split of one data set has
        the same native size)."""
        if self._prep is None:
            self._prep = model_preprocessing(self.model, self.data, ds, self.options)
        return self._prep

    def preprocessing_of(self, ds: ImageSplit, *, in_distribution: bool = True) -> Preprocessing:
        """The model's preprocessing on `ds`; on another data set, what was said about the model, else (no probe on
        labels that are not the model's) the set's native size, unnormalised."""
        if in_distribution:
            return self.preprocessing_for(ds)
        return model_preprocessing(self.model, ds.name, ds, self.options, probe=False)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.preprocessing_for(self.images("test"))

    @property
    def class_names(self) -> list[str] | None:
        """The checkpoint's class names, else the data set's (its label order is the model's)."""
        if self.model.class_names:
            return list(self.model.class_names)
        if self.options.data.weights:  # torchvision's categories for those weights, when the class count matches
            names = torchvision_weights(self.options.data.weights)[1]
            if len(names) == self.model.num_classes:
                return names
        cached = next((fs.info.get("classes") for fs in self._features.values() if fs.info.get("classes")), None)
        if cached:
            return list(cached)
        try:
            return list(self.images(next(iter(self._images), "test")).classes)
        except VcalError:
            return None

    def release(self) -> None:
        """End the distributed part: under torchrun, ranks > 0 stop once the splits they share are cached."""
        release_workers()


def open_checkpoint(checkpoint: str | Path | LoadedModel, options: ExtractOptions | None = None) -> LoadedModel:
    """Load a checkpoint by path with the options' loading flags (and `head_file` applied); a `LoadedModel`
    is returned as it is."""
    if isinstance(checkpoint, LoadedModel):
        return checkpoint
    o = options or ExtractOptions()
    loaded = load_checkpoint(
        checkpoint,
        arch=o.load.arch,
        trust=o.load.trust_checkpoint,
        head_module=o.load.head_module,
        weight_set=o.load.weight_set,
    )
    if o.load.head_file:
        loaded = apply_head_file(loaded, o.load.head_file)
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
    """One split's features in one call (a `Workbench` for one split): (the model, its features on `data:split`,
    the preprocessing used). `check_classes=False` lets the data have other classes (out-of-distribution sets)."""
    bench = Workbench.open(checkpoint, data, options, progress=progress)
    ds = bench.images(split)
    fs = bench.features(split) if check_classes else bench.features_of(ds, in_distribution=False)
    return bench.model, fs, bench.preprocessing_of(ds, in_distribution=check_classes)


def model_preprocessing(
    loaded: LoadedModel, data: str | ImageSplit, ds: ImageSplit, o: ExtractOptions, *, probe: bool = True
) -> Preprocessing:
    """The model's preprocessing: from what was said (flags, metadata, the checkpoint's own training record),
    else probed on the val split of `data` (once per model: OOD sets and later splits reuse it)."""
    flags = {"input_size": o.data.input_size, "mean": o.data.mean, "std": o.data.std}
    recorded = torchvision_weights(o.data.weights, loaded.in_chans)[0] if o.data.weights else loaded.preprocessing
    said = resolve_preprocessing(
        flags=flags,
        checkpoint=recorded,
        hints=loaded.hints,
        timm_cfg=loaded.timm_cfg,
        model_in_chans=loaded.in_chans,
        native_size=ds.native_size,
    )
    if said is not None:
        _fits_the_model(said, loaded, flags)
        return with_resize(said, o.data.resize)
    if loaded.probed is not None:
        return loaded.probed
    if not probe:  # an OOD set's labels cannot score candidates: the data's native size, unnormalised, said so
        plain = probe_candidates(loaded.timm_cfg, loaded.in_chans, ds.native_size, ((0.0,), (1.0,)))[-1]
        return replace(plain, source=f"{plain.source} (not probed: no in-distribution split yet)")
    if isinstance(data, ImageSplit):
        val = data
    else:
        try:
            val = load_split(data, "val", root=o.data.data_root, val_from=o.data.val_from)
        except VcalError:
            val = ds
    loaded.probed = probe_preprocessing(loaded, val, o)
    return with_resize(loaded.probed, o.data.resize)


def _fits_the_model(prep: Preprocessing, loaded: LoadedModel, flags: dict) -> None:
    """An input whose channel count the model cannot take is refused here, naming where it came from."""
    c = prep.input_size[0]
    if loaded.in_chans is not None and c != loaded.in_chans:
        where = "--input-size" if flags.get("input_size") else f"the preprocessing ({prep.source})"
        raise UsageError(
            f"{where} gives {c} channel(s); the model takes {loaded.in_chans}",
            hint=f"give --input-size {loaded.in_chans},{prep.input_size[1]},{prep.input_size[2]}",
        )


def with_resize(prep: Preprocessing, resize: int | None) -> Preprocessing:
    """`--resize N`: the shorter side to N, then the centre crop to the input size (crop_pct = size / N)."""
    if resize is None:
        return prep
    crop = max(prep.input_size[1:])
    if resize < crop:
        raise UsageError(f"--resize {resize} is smaller than the crop {crop} (--input-size); give --resize >= {crop}")
    return replace(prep, crop_pct=crop / resize, source=f"{prep.source} + --resize {resize}")

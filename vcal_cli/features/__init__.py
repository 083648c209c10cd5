"""Penultimate features, logits and labels of a split: from the cache, else from one forward pass."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from vcal_cli._io import atomic_write_bytes, safetensors_bytes
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.data import ImageSplit, Preprocessing
from vcal_cli.errors import CacheError, DataError
from vcal_cli.features.cache import FeatureCache, cache_info, cache_key, default_cache_dir
from vcal_cli.features.extract import Track, extract_features, quiet, resolve_device

__all__ = [
    "FeatureSet",
    "FeatureCache",
    "get_features",
    "extract_features",
    "default_cache_dir",
    "resolve_device",
    "quiet",
    "Track",
]


@dataclass
class FeatureSet:
    """features (N, D), logits (N, K), labels (N,) of one split, with where they came from."""

    features: Tensor
    logits: Tensor
    labels: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        tensors = {
            "features": self.features.contiguous(),
            "logits": self.logits.contiguous(),
            "labels": self.labels.contiguous(),
        }
        return atomic_write_bytes(path, safetensors_bytes(tensors, metadata or {}))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        t = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return cls(t["features"], t["logits"], t["labels"], json.loads(meta.get("vcal_cache", "{}")), True, Path(path))


def get_features(
    loaded: LoadedModel,
    data: ImageSplit,
    prep: Preprocessing,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    device: str = "auto",
    batch_size: int = 256,
    workers: int = 0,
    check_classes: bool = True,
    progress: Track = quiet,
) -> FeatureSet:
    """Features of `data` under `loaded`, read from the cache when an entry exists, else extracted and cached.

    `check_classes=False` allows data with other classes (out-of-distribution sets).
    """
    if check_classes and loaded.num_classes != data.num_classes:
        raise DataError(
            f"the checkpoint has {loaded.num_classes} classes but data set '{data.name}' has {data.num_classes}",
            hint="audit it on a data set with the same classes",
        )
    resolve_device(device)  # a bad --device fails before any work, cached or not
    parts = {
        "checkpoint": loaded.sha256,
        "arch": loaded.arch,
        "head": loaded.head_name,
        "data": data.name,
        "data_identity": data.identity,
        "split": data.split,
        "preprocessing": prep.to_dict(),
    }
    cache = FeatureCache(cache_dir)
    path = cache.path(cache_key(parts))
    if use_cache and path.exists():
        try:
            fs = FeatureSet.load(path)
            if len(fs) == len(data):
                return fs
        except Exception:  # noqa: BLE001 - a broken entry is rebuilt below, never trusted
            pass
    feats, logits, labels = extract_features(
        loaded, data, prep, device=device, batch_size=batch_size, workers=workers, progress=progress
    )
    info = {
        "checkpoint": str(loaded.path) if loaded.path else None,
        "checkpoint_sha256": loaded.sha256,
        "arch": loaded.arch,
        "data": data.name,
        "split": data.split,
        "n": len(labels),
        "feature_dim": int(feats.shape[1]),
        "preprocessing": prep.to_dict(),
    }
    # clone outside inference mode: inference tensors cannot enter autograd (head training)
    fs = FeatureSet(feats.clone(), logits.clone(), labels.clone(), info)
    if use_cache:
        try:
            fs.save(path, cache_info(**info))
            fs.path = path
        except OSError as e:
            raise CacheError(
                f"cannot write the feature cache '{path}' ({e.strerror})",
                hint="set --cache-dir or VCAL_CACHE to a writable directory",
            ) from None
    return fs

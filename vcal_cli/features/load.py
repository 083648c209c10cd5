"""Penultimate features, logits and labels of a split: from the cache, else from one forward pass."""

from __future__ import annotations

import errno
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from torch import Tensor

from vcal_cli._io import pause_point
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.data import ImageSplit, Preprocessing
from vcal_cli.errors import CacheError, DataError, UsageError, VcalWarning
from vcal_cli.features import checksum
from vcal_cli.features.cache import FeatureCache, cache_info, cache_key
from vcal_cli.features.distributed import World, world
from vcal_cli.features.extract import Forward, Runtime, Track, batch_ticks, extract_features, quiet
from vcal_cli.features.settings import ExtractOptions
from vcal_cli.features.store import MappedFile, Parts, ShardPlan, cache_dtype, read_header, write_entry


@dataclass(kw_only=True)
class FeatureSet:
    """features (N, D), logits (N, K), labels (N,) of one split, with where they came from.

    Read from the cache, the tensors are memory-mapped (`mapped`): they cost no memory until touched,
    and loops over a cache larger than memory drop the pages they are done with (`store.release_pages`).
    """

    features: Tensor
    logits: Tensor
    labels: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False
    path: Path | None = None
    resumed: int = 0  # shards found finished from an interrupted run
    mapped: MappedFile | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        """Write features, logits and labels as one safetensors file (atomically)."""
        tensors = {"features": self.features, "logits": self.logits, "labels": self.labels}
        return write_entry(Path(path), tensors, metadata or {})

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        m = MappedFile(path)
        t = m.tensors
        if not {"features", "logits", "labels"} <= set(t):
            raise CacheError(f"'{path}' holds {sorted(t)}; a feature file needs features, logits and labels")
        info = json.loads(m.metadata.get("vcal_cache", "{}"))
        return cls(
            features=t["features"],
            logits=t["logits"],
            labels=t["labels"],
            info=info,
            from_cache=True,
            path=Path(path),
            mapped=m,
        )


def _entry_ok(path: Path, n: int) -> bool:
    """True if `path` is a complete entry of n rows whose contents match its checksum. Anything else is a miss,
    never trusted: a file that is there but damaged (truncated, garbled, from another run of other rows, without a
    checksum) is removed with a warning naming it, and rebuilt."""
    if not path.exists():
        return False
    try:
        header, _ = read_header(path)
        complete = all(header[k]["shape"][0] == n for k in ("features", "logits", "labels"))
        why = checksum.verify(path) if complete else f"it does not hold {n:,} rows"
    except Exception:  # a broken or foreign file
        why = "it is not a readable cache entry"
    if why is None:
        return True
    warnings.warn(f"cache entry '{path}' is damaged ({why}); rebuilding it", VcalWarning, stacklevel=2)
    path.unlink(missing_ok=True)
    return False


def _tidy(path: Path) -> None:
    """Leftovers of interrupted runs beside a complete entry (its shard folder, temp files of its merge): removed
    when no other run holds the entry's lock (one that does may be writing them right now)."""
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return
    try:
        shutil.rmtree(path.with_name(path.stem + ".parts"), ignore_errors=True)
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
    finally:
        lock.release()


def get_features(
    loaded: LoadedModel,
    data: ImageSplit,
    prep: Preprocessing,
    options: ExtractOptions | None = None,
    *,
    check_classes: bool = True,
    progress: Track = quiet,
) -> FeatureSet:
    """Features of `data` under `loaded`, read from the cache when an entry exists, else extracted and cached.

    Extraction writes shards of `options.cache.shard_size` rows as they are produced (an interrupted run resumes from
    the finished ones) and merges them into one entry; under torchrun the shards are spread over the
    ranks. Features are stored as `options.cache.cache_dtype` (logits always as float32). `check_classes=False`
    allows data with other classes (out-of-distribution sets).
    """
    o = options or ExtractOptions()
    if check_classes and loaded.num_classes != data.num_classes:
        raise DataError(
            f"the checkpoint has {loaded.num_classes} classes but data set '{data.name}' has {data.num_classes}",
            hint="audit it on a data set with the same classes",
        )
    rt = Runtime.of(o)
    rt.check()  # a bad --device or --precision fails before any work, cached or not
    dtype = cache_dtype(o.cache.cache_dtype)
    info = {
        "checkpoint": str(loaded.path) if loaded.path else None,
        "checkpoint_sha256": loaded.sha256,
        "arch": loaded.arch,
        "data": data.name,
        "split": data.split,
        "n": len(data),
        "classes": list(data.classes),  # the data set's class names, for checkpoints that carry none
        "preprocessing": prep.to_dict(),
        "cache_dtype": o.cache.cache_dtype,
        "precision": o.runtime.precision,
        "channels_last": rt.use_channels_last,
    }
    w = world()
    if not o.cache.use_cache:
        if w.size > 1:
            raise UsageError("--no-cache cannot run under torchrun: the ranks hand their features over in the cache")
        feats, logits, labels = extract_features(loaded, data, prep, o, progress=progress)
        # clone outside inference mode: inference tensors cannot enter autograd (head training)
        return FeatureSet(
            features=feats.clone(),
            logits=logits.clone(),
            labels=labels.clone(),
            info={**info, "feature_dim": feats.shape[1]},
        )
    parts = {
        "checkpoint": loaded.sha256,
        **({"weights": loaded.weight_set["set"]} if loaded.weight_set else {}),  # one file, two sets of weights
        "arch": loaded.arch,
        "head": loaded.head_name,
        "data": data.name,
        "data_identity": data.identity,
        "split": data.split,
        "preprocessing": prep.to_dict(),
        **{k: info[k] for k in ("cache_dtype", "precision", "channels_last")},
    }
    path = FeatureCache(o.cache.cache_dir).path(cache_key(parts))
    if w.broadcast(_entry_ok(path, len(data)) if w.main else False):
        if w.main:
            _tidy(path)
        return FeatureSet.load(path)
    try:
        plan = ShardPlan.make(len(data), o.cache.shard_size, o.runtime.batch_size)
        if w.size > 1:  # torchrun: the ranks share the build (rank 0 prepares and merges, barriers order them)
            resumed = _build(loaded, data, prep, rt, dtype, plan, path, info, w, progress)
        else:  # separate runs on one entry: one builds, the others wait for it and read it
            path.parent.mkdir(parents=True, exist_ok=True)
            pause_point(f"cache-lock-wait:{path.name}")  # the lock test holds runs here and just inside
            with FileLock(f"{path}.lock"):
                pause_point(f"cache-lock-held:{path.name}")
                if _entry_ok(path, len(data)):
                    return FeatureSet.load(path)
                resumed = _build(loaded, data, prep, rt, dtype, plan, path, info, w, progress)
    except OSError as e:
        if e.errno == errno.ENOSPC:  # finished shards stay (a rerun with space resumes); no entry was written
            dim = getattr(loaded.head, "in_features", None) or 2048
            width = dtype.itemsize * dim + 4 * loaded.num_classes + 8  # features, logits, label per row
            raise CacheError(
                f"the disk holding the feature cache '{path.parent}' is full: this split needs about "
                f"{len(data) * width / 1e6:.1f} MB ({len(data):,} rows of {dim} features)",
                hint="free space there, or set --cache-dir (or VCAL_CACHE) to a disk with room, or --no-cache",
            ) from None
        raise CacheError(
            f"cannot write the feature cache '{path}' ({e.strerror})",
            hint="set --cache-dir or VCAL_CACHE to a writable directory",
        ) from None
    fs = FeatureSet.load(path)
    fs.from_cache, fs.resumed = False, resumed
    return fs


def _build(loaded, data, prep, rt, dtype, plan, path, info, w: World, progress: Track) -> int:
    """Extract this rank's missing shards, then (rank 0) merge them into the entry; returns shards resumed."""
    parts = Parts(path, plan, {"entry": path.name})
    resumed = w.broadcast(parts.prepare() if w.main else 0)
    mine = [i for i in w.shards(len(plan)) if not parts.done(i)]
    total = sum(-(-(plan.bounds(i)[1] - plan.bounds(i)[0]) // plan.batch_size) for i in mine)
    label = f"features {data.name}:{data.split}" + (
        f" (resuming: {resumed}/{len(plan)} shards done)" if resumed else ""
    )
    advance, finish = batch_ticks(progress if w.main else quiet, total, label)
    if mine:
        with Forward(loaded, prep, rt) as fwd:
            for i in mine:
                start, stop = plan.bounds(i)
                feats, logits = fwd.rows(data, start, stop, advance=advance)
                labels = data.labels[start:stop].long().contiguous()
                parts.write(i, {"features": feats.to(dtype), "logits": logits, "labels": labels})
    finish()
    w.barrier()
    if w.main:
        dim = read_header(parts.shard(0))[0]["features"]["shape"][1]
        parts.merge(cache_info(**info, feature_dim=dim))
    w.barrier()
    return resumed

"""The functions behind the commands. Users can import these directly:

    from vcal_cli import audit
    report = audit("sample_checkpoints/mlp_digits.safetensors", data="digits")
    print(report.metrics["ece"])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vcal_cli._io import same_file, sha256_file
from vcal_cli.checkpoints import LoadedModel, load_checkpoint
from vcal_cli.data import Preprocessing, load_split, resolve_preprocessing
from vcal_cli.errors import DataError, UsageError
from vcal_cli.features import FeatureSet, Track, get_features, quiet
from vcal_cli.metrics import DEFAULT_N_BINS, compute_metrics
from vcal_cli.metrics._validate import check_bins
from vcal_cli.reports.schema import AuditReport

__all__ = ["ExtractOptions", "load_features", "audit", "export_features", "load_logits"]


@dataclass(frozen=True)
class ExtractOptions:
    """How to load a checkpoint and run it over data; `None` means the checkpoint's or vcal's default."""

    arch: str | None = None
    trust_checkpoint: bool = False
    head_module: str | None = None
    data_root: str | None = None
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    device: str = "auto"
    batch_size: int = 256
    workers: int = 0


def load_features(
    checkpoint: str | Path | LoadedModel,
    data: str = "digits",
    split: str = "test",
    options: ExtractOptions | None = None,
    *,
    progress: Track = quiet,
) -> tuple[LoadedModel, FeatureSet, Preprocessing]:
    """Load a checkpoint (or take a loaded one) and return its features on `data:split` (cached)."""
    o = options or ExtractOptions()
    if o.batch_size < 1:
        raise UsageError(f"--batch-size {o.batch_size} must be at least 1")
    if o.workers < 0:
        raise UsageError(f"--workers {o.workers} must be 0 or more")
    ds = load_split(data, split, root=o.data_root)
    loaded = checkpoint if isinstance(checkpoint, LoadedModel) else load_checkpoint(
        checkpoint, arch=o.arch, trust=o.trust_checkpoint, head_module=o.head_module)
    prep = resolve_preprocessing(
        flags={"input_size": o.input_size, "mean": o.mean, "std": o.std}, checkpoint=loaded.preprocessing,
        timm_cfg=loaded.timm_cfg, model_in_chans=loaded.in_chans, native_size=ds.native_size)
    fs = get_features(loaded, ds, prep, cache_dir=o.cache_dir, use_cache=o.use_cache, device=o.device,
                      batch_size=o.batch_size, workers=o.workers, progress=progress)
    return loaded, fs, prep


def load_logits(path: str | Path) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """(logits, probs, labels) from an .npz or .safetensors file holding `logits` or `probs`, and `labels`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--logits '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            arrays = {k: v for k, v in load_file(str(path)).items()}
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: torch.from_numpy(np.asarray(z[k])) for k in z.files}
    except (SafetensorError, ValueError, OSError, EOFError, Exception) as e:  # noqa: BLE001 - a bad file
        raise DataError(f"--logits '{path}' is not a readable .npz or .safetensors file ({e})") from None
    if "labels" not in arrays or not ({"logits", "probs"} & set(arrays)):
        raise DataError(f"--logits '{path}' holds {sorted(arrays)}; it needs 'labels' and 'logits' or 'probs'")
    return arrays.get("logits"), arrays.get("probs") if "logits" not in arrays else None, arrays["labels"]


def audit(
    checkpoint: str | Path | LoadedModel | None = None,
    *,
    data: str = "digits",
    split: str = "test",
    logits: str | Path | None = None,
    options: ExtractOptions | None = None,
    n_bins: int = DEFAULT_N_BINS,
    n_bootstrap: int = 200,
    seed: int = 0,
    progress: Track = quiet,
) -> AuditReport:
    """Audit a checkpoint on `data:split` (or precomputed `logits`) and return the report (nothing written)."""
    check_bins(n_bins)
    if n_bootstrap < 0:
        raise UsageError(f"--bootstrap {n_bootstrap} must be 0 or more")
    if (checkpoint is None) == (logits is None):
        raise UsageError("give a CHECKPOINT or --logits FILE, not both and not neither")
    o = options or ExtractOptions()
    settings: dict[str, Any] = {"bins": n_bins, "bootstrap": n_bootstrap, "seed": seed}
    if logits is not None:
        lg, pr, labels = load_logits(logits)
        result = compute_metrics(labels, logits=lg, probs=pr, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        k = (lg if lg is not None else pr).shape[1]  # type: ignore[union-attr]
        ck = {"path": str(logits), "sha256": sha256_file(logits), "arch": None, "num_classes": k, "head_module": None}
        return AuditReport(ck, {"name": f"logits:{Path(logits).name}", "split": split, "n": result.n},
                           result, {**settings, "input": "probs" if lg is None else "logits"})
    loaded, fs, prep = load_features(checkpoint, data, split, o, progress=progress)
    result = compute_metrics(fs.labels, logits=fs.logits, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    settings.update({"preprocessing": {**prep.to_dict(), "source": prep.source}, "device": o.device,
                     "batch_size": o.batch_size, "cache": {"hit": fs.from_cache, "path": str(fs.path) if fs.path else None},
                     "options": {k: v for k, v in asdict(o).items() if v is not None}})
    return AuditReport(loaded.describe(), {"name": data, "split": split, "n": len(fs)}, result, settings)


def export_features(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str = "digits",
    split: str = "test",
    options: ExtractOptions | None = None,
    progress: Track = quiet,
) -> Path:
    """Write `features`, `logits` and `labels` of `data:split` to `out` (.safetensors), via the cache."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out '{out}' must end in .safetensors")
    if same_file(checkpoint, out):
        raise UsageError(f"refusing to write '{out}' over the checkpoint", hint="choose another --out")
    loaded, fs, prep = load_features(checkpoint, data, split, options, progress=progress)
    meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": loaded.sha256, "data": data, "split": split,
            "preprocessing": str(prep.to_dict())}
    return fs.save(out, meta)

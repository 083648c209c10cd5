"""Features computed elsewhere (JAX, TensorFlow, a serving log): one `.npz` or `.safetensors` file holding each split's
penultimate features, logits and labels, and the original head's weight and bias.

Arrays: `train_features` (N, D), `train_logits` (N, K), `train_labels` (N,), the same for `val_` and `test_`,
`head_weight` (K, D) and `head_bias` (K,) (the linear layer the logits came from: the post-hoc maps act through it,
and vcal checks that it gives the logits), and optionally `classes` (K names, npz only). `vcal retrain FILE` fits
heads on it as on a checkpoint's cached features and writes head files tied to the file (`--head-file`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from vcal_cli._io import sha256_file
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.errors import DataError
from vcal_cli.features.load import FeatureSet

SPLITS = ("train", "val", "test")
PARTS = ("features", "logits", "labels")


def is_bundle(path: str | Path) -> bool:
    """True for an .npz or .safetensors file that holds `test_features` (read from its header, nothing loaded)."""
    path = Path(path)
    if not path.is_file() or path.suffix not in (".npz", ".safetensors"):
        return False
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return "test_features" in z.files
        with safe_open(str(path), "pt") as f:
            return "test_features" in f.keys()
    except Exception:  # not readable as what its suffix says: not a bundle (the loader says what it is)
        return False


def _arrays(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        return dict(load_file(str(path)))
    except Exception as e:  # a bad file
        raise DataError(f"'{path}' is not a readable feature file ({type(e).__name__}: {e})") from None


def open_bundle(path: str | Path) -> tuple[LoadedModel, dict[str, FeatureSet]]:
    """The feature file as a model (its head) and its splits; anything inconsistent is one line naming the array."""
    path = Path(path)
    a = _arrays(path)
    t = {k: torch.as_tensor(v) for k, v in a.items() if k != "classes"}
    missing = [f"{s}_{p}" for s in SPLITS for p in PARTS if f"{s}_{p}" not in t] + [
        k for k in ("head_weight", "head_bias") if k not in t
    ]
    if missing:
        raise DataError(
            f"feature file '{path}' lacks {', '.join(missing)}", hint="see docs/formats.md#features-from-any-framework"
        )
    w, b = t["head_weight"].float(), t["head_bias"].float()
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise DataError(
            f"'{path}': head_weight must be (K, D) and head_bias (K,), got {tuple(w.shape)}, {tuple(b.shape)}"
        )
    k, d = w.shape
    splits = {s: _split(path, s, t, k, d) for s in SPLITS}
    head = nn.Linear(d, k)
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
        test = splits["test"]
        err = float((head(test.features[:2048].float()) - test.logits[:2048]).abs().max())
    scale = float(test.logits[:2048].abs().max()) + 1e-6
    if err > 1e-3 * scale:
        raise DataError(
            f"'{path}': test_features @ head_weight.T + head_bias differs from test_logits by up to {err:.3g}",
            hint="give the weight and bias of the layer that produced the logits",
        )
    names = [str(c) for c in a["classes"]] if "classes" in a and len(a["classes"]) == k else None
    loaded = LoadedModel(
        model=nn.Sequential(OrderedDict(fc=head)).eval(),
        head_name="fc",
        arch="features",
        num_classes=k,
        sha256=sha256_file(path),
        path=path,
        class_names=names,
        preprocessing=None,
        arch_kwargs={},
        in_chans=None,
    )
    return loaded, splits


def _split(path: Path, s: str, t: dict[str, torch.Tensor], k: int, d: int) -> FeatureSet:
    f, lg, y = t[f"{s}_features"], t[f"{s}_logits"], t[f"{s}_labels"]
    n = len(y)
    if f.shape != (n, d) or lg.shape != (n, k) or y.ndim != 1:
        raise DataError(
            f"'{path}': {s}_features must be ({n}, {d}), {s}_logits ({n}, {k}), {s}_labels ({n},); got "
            f"{tuple(f.shape)}, {tuple(lg.shape)}, {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise DataError(f"'{path}': {s}_labels must be class indices, found fractions")
    y = y.long()
    if n == 0 or y.min() < 0 or y.max() >= k:
        raise DataError(f"'{path}': {s}_labels must lie in 0..{k - 1} and the split must not be empty")
    if not (torch.isfinite(f).all() and torch.isfinite(lg).all()):
        raise DataError(f"'{path}': {s}_features or {s}_logits hold NaN or inf")
    info = {"data": f"features:{path.name}", "split": s, "n": n, "feature_dim": d}
    return FeatureSet(
        features=f.float().contiguous(), logits=lg.float().contiguous(), labels=y, info=info, from_cache=True, path=path
    )
